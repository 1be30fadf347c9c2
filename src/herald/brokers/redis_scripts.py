"""The Redis broker's Lua scripts: each a step that must be atomic, or one
round trip instead of many. Key layout: `redis_wire`."""

from __future__ import annotations

from typing import Any

import msgspec


class Scripts:
    """The scripts, registered once per client (EVALSHA; loaded again after a restart)."""

    def __init__(self, client: Any) -> None:
        self.move_due = client.register_script(MOVE_DUE)
        self.heartbeat = client.register_script(HEARTBEAT)
        self.leases = client.register_script(LEASES)
        self.forget_consumers = client.register_script(FORGET_CONSUMERS)
        self.trim_handled = client.register_script(TRIM_HANDLED)
        self.leave_stream = client.register_script(LEAVE_STREAM)
        self.publish = client.register_script(PUBLISH)
        self.read = client.register_script(READ)


# What READ returns: msgpack [[stream, [[id, [field, value, ...]], ...]], ...].
ReadReply = list[tuple[bytes, list[tuple[bytes, list[bytes]]]]]
decode_read = msgspec.msgpack.Decoder(ReadReply).decode


_SPLIT = """
local function split(raw)
  local out, pos, len = {}, 1, #raw
  while pos <= len do
    local colon = string.find(raw, ':', pos, true)
    local n = tonumber(string.sub(raw, pos, colon - 1))
    out[#out + 1] = string.sub(raw, colon + 1, colon + n)
    pos = colon + n + 1
  end
  return out
end
"""

# Move due delayed records into their streams. Atomic, so any number of
# processes may run it at once: each record is moved exactly once.
# KEYS: delayed zset, delayed data hash, delayed count hash. ARGV: limit, maxlen.
# Returns {moved, next due ms or -1, server now ms}.
MOVE_DUE = _SPLIT + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local maxlen = tonumber(ARGV[2])
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[2], id)
  if raw then
    local parts = split(raw)
    local args = {'XADD', parts[1]}
    if maxlen > 0 then
      args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = maxlen
    end
    args[#args + 1] = '*'
    for i = 3, #parts do args[#args + 1] = parts[i] end
    redis.call(unpack(args))
    if redis.call('HINCRBY', KEYS[3], parts[2], -1) <= 0 then
      redis.call('HDEL', KEYS[3], parts[2])
    end
    redis.call('HDEL', KEYS[2], id)
  end
  redis.call('ZREM', KEYS[1], id)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {#ids, nxt[2] or -1, now}
"""

# Heartbeat a member and read the group's view, by the server's clock (so
# members on hosts with skewed clocks agree who is alive).
# KEYS: members zset, then the topic's lease keys. ARGV: member, ttl ms.
# Returns {live members, owner of each lease or ''}.
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)
redis.call('PEXPIRE', KEYS[1], ttl * 10)
local owners = {}
for i = 2, #KEYS do owners[i - 1] = redis.call('GET', KEYS[i]) or '' end
return {redis.call('ZRANGE', KEYS[1], 0, -1), owners}
"""

# Take, renew or give up leases in one step. KEYS: lease keys. ARGV: member,
# ttl ms, then one action per key: 'r' renew, 'd' drop, 't:<owner>' take when
# free, mine, or held by <owner> (a member that left). Returns 1/0 held per key.
LEASES = """
local me, ttl = ARGV[1], ARGV[2]
local out = {}
for i, key in ipairs(KEYS) do
  local action = ARGV[i + 2]
  local cur = redis.call('GET', key)
  local held = 0
  if action == 'd' then
    if cur == me then redis.call('DEL', key) end
  elseif action == 'r' then
    if cur == me then redis.call('PEXPIRE', key, ttl); held = 1 end
  else
    local expected = string.sub(action, 3)
    if (not cur) or cur == me or (expected ~= '' and cur == expected) then
      redis.call('SET', key, me, 'PX', ttl); held = 1
    end
  end
  out[i] = held
end
return out
"""

# Forget consumers of a stream that hold no pending entries (left or dead and
# fully reclaimed). Never one with pending entries: DELCONSUMER would drop
# them from the group, and they would never be delivered again.
# KEYS: stream. ARGV: group, member to keep, idle ms.
FORGET_CONSUMERS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
local removed = 0
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['name'] ~= ARGV[2] and tonumber(info['pending']) == 0
      and tonumber(info['idle']) >= tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
"""

# Retention by age that never drops a record some group has not handled:
# trim below min(age cutoff, each group's first pending id, each group's next
# undelivered id). A stream no group reads (dead letters) is left alone.
# KEYS: stream. ARGV: cutoff ms. Returns entries trimmed.
TRIM_HANDLED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end
local cms, cseq = tonumber(ARGV[1]), 0
local function lower(id)
  local dash = string.find(id, '-', 1, true)
  local ms, seq = tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
  if ms < cms or (ms == cms and seq < cseq) then cms, cseq = ms, seq end
end
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local last = info['last-delivered-id']
  local dash = string.find(last, '-', 1, true)
  lower(string.sub(last, 1, dash - 1) .. '-' .. (tonumber(string.sub(last, dash + 1)) + 1))
  if tonumber(info['pending']) > 0 then
    local summary = redis.call('XPENDING', KEYS[1], info['name'])
    lower(summary[2])
  end
end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d-%d', cms, cseq))
"""

# Leave a stream's group when nothing is pending for this member.
# KEYS: stream. ARGV: group, member.
LEAVE_STREAM = """
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if ok and #pending == 0 then
  redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
"""

# Append and park a batch of records atomically, in order, in one round trip
# (one EVALSHA instead of a MULTI of XADDs: redis-py packs and parses far less).
# KEYS: delayed zset, delayed data hash, delayed count hash. ARGV: maxlen,
# records made by pack_append / pack_delayed. Returns how many items it read.
PUBLISH = _SPLIT + """
local items = split(ARGV[2])
local maxlen = tonumber(ARGV[1])
local i, n = 1, #items
while i <= n do
  if items[i] == 'x' then
    local count = tonumber(items[i + 2])
    local args = {'XADD', items[i + 1]}
    if maxlen > 0 then
      args[#args + 1] = 'MAXLEN'; args[#args + 1] = '~'; args[#args + 1] = maxlen
    end
    args[#args + 1] = '*'
    for j = i + 3, i + 2 + 2 * count do args[#args + 1] = items[j] end
    redis.call(unpack(args))
    i = i + 3 + 2 * count
  else
    redis.call('HSET', KEYS[2], items[i + 1], items[i + 4])
    redis.call('ZADD', KEYS[1], items[i + 2], items[i + 1])
    redis.call('HINCRBY', KEYS[3], items[i + 3], 1)
    i = i + 5
  end
end
return n
"""

# XREADGROUP (never blocking: scripts may not) with the reply packed as one
# msgpack string, which the client decodes in C: for entries with a dozen
# CloudEvents fields this is several times cheaper than redis-py parsing each
# field as its own RESP item. A deleted entry comes with no fields.
# KEYS: streams. ARGV: group, consumer, count, then one id ('>' or a cursor) per stream.
READ = r"""
local function bin(s)
  local n = #s
  if n < 256 then return '\196' .. string.char(n) .. s end
  if n < 65536 then return '\197' .. struct.pack('>I2', n) .. s end
  return '\198' .. struct.pack('>I4', n) .. s
end
local function arr(n)
  if n < 16 then return string.char(144 + n) end
  if n < 65536 then return '\220' .. struct.pack('>I2', n) end
  return '\221' .. struct.pack('>I4', n)
end
local args = {'XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS'}
for _, key in ipairs(KEYS) do args[#args + 1] = key end
for i = 1, #KEYS do args[#args + 1] = ARGV[3 + i] end
local reply = redis.call(unpack(args))
if not reply then return arr(0) end
local out = {arr(#reply)}
for _, s in ipairs(reply) do
  out[#out + 1] = arr(2); out[#out + 1] = bin(s[1])
  local entries = s[2]
  out[#out + 1] = arr(#entries)
  for _, e in ipairs(entries) do
    out[#out + 1] = arr(2); out[#out + 1] = bin(e[1])
    local fields = e[2]
    if fields then
      out[#out + 1] = arr(#fields)
      for _, x in ipairs(fields) do out[#out + 1] = bin(x) end
    else
      out[#out + 1] = arr(0)
    end
  end
end
return table.concat(out)
"""
