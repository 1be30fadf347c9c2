"""The reference system as `herald demo` runs it: every service of examples/
(todo with notification, analytics and the event store; feed; interactive;
jobs; shop; the order saga) in one process on the embedded default, or each in
a process of its own on a broker you name.

parts.py       the Part protocol each service adapts to (start, drive, check, summary, stop)
<service>.py   that adapter, for this process (`local`) and for a process of its own (`remote`)
catalogue.py   which services there are; a missing one is reported, never skipped
deployment.py  the broker, and each service's tables and cache keys
inprocess.py   all parts in this process
processes.py   each part as its own process (serve.py, service_process.py, publishing.py)
system.py      start, drive under one progress bar, check, stop; the exit code
summary.py     the tables and the verdict
"""
