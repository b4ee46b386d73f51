//! The one Lua script run per `ShouldRateLimit` call: it reads every descriptor's counters, decides,
//! then counts, atomically (Redis runs a script alone), so N services sharing one Redis enforce
//! one budget exactly.
//!
//! Time is Redis's own clock (`TIME`), so every service instance agrees on window boundaries
//! whatever its host clock says. Window `i` of a descriptor covers `[i*W, (i+1)*W)` ms since the
//! epoch; its counter is `<key>:<W>:<i>` and expires a second after it can last be read (the end of
//! the window; for sliding, the end of the next one).
//!
//! Sliding windows weight the previous window by the part of it still inside the sliding window:
//! `used = current + previous * (W - elapsed) / W`.

use super::plan::{Check, Kind};
use redis::aio::ConnectionLike;

/// KEYS[i]: counter key of descriptor i (without the window suffix).
/// ARGV: 6 per descriptor: window_ms, limit, addend, tokens (0/1), sliding (0/1), refund (0/1).
/// Returns { overall (1 OK / 2 OVER_LIMIT), then per descriptor: code, remaining, reset_ms }.
const LUA: &str = r#"
-- Redis < 5 needs effects replication before writing after a non-deterministic TIME.
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function num(v) return tonumber(v) or 0 end
local function fmt(n) return string.format('%.0f', n) end
local d = {}
local any_over = false
for i = 1, #KEYS do
  local a = (i - 1) * 6
  local s = {
    window = tonumber(ARGV[a + 1]), limit = tonumber(ARGV[a + 2]), addend = tonumber(ARGV[a + 3]),
    tokens = ARGV[a + 4] == '1', sliding = ARGV[a + 5] == '1', refund = ARGV[a + 6] == '1',
  }
  local idx = math.floor(now / s.window)
  s.elapsed = now - idx * s.window
  local base = KEYS[i] .. ':' .. fmt(s.window) .. ':'
  s.key = base .. fmt(idx)
  s.cur = num(redis.call('GET', s.key))
  s.prev = 0
  if s.sliding then s.prev = num(redis.call('GET', base .. fmt(idx - 1))) end
  s.used = s.cur + s.prev * (s.window - s.elapsed) / s.window
  s.over = false
  if not s.refund then
    if s.tokens then s.over = s.used >= s.limit else s.over = s.used + s.addend > s.limit end
  end
  if s.over then any_over = true end
  d[i] = s
end

-- Milliseconds until a call like this one could pass (over) or until the window ends (not over).
local function reset_ms(s)
  local to_end = s.window - s.elapsed
  if not s.over or not s.sliding then return to_end end
  local need = s.limit - (s.tokens and 0 or s.addend)
  local strict = s.tokens and 1 or 0
  if s.cur <= need - strict and s.prev > 0 then
    -- Still in this window: wait until the previous window's weight has dropped enough.
    local at = s.window - (need - s.cur) * s.window / s.prev
    return math.max(1, math.ceil(at - s.elapsed) + strict)
  end
  if s.cur > 0 and need >= strict then
    -- Next window: this window becomes the previous one and fades.
    local at = s.window - (need - strict) * s.window / s.cur
    return to_end + math.max(1, math.ceil(at))
  end
  return to_end + s.window
end

local out = { any_over and 2 or 1 }
for i = 1, #KEYS do
  local s = d[i]
  local used = s.used
  if s.addend > 0 and (s.refund or s.tokens or not any_over) then
    local last_read = s.window - s.elapsed
    if s.sliding then last_read = last_read + s.window end
    if s.refund then
      if s.cur > 0 then
        local back = math.min(s.cur, s.addend)
        redis.call('SET', s.key, fmt(s.cur - back), 'PX', fmt(last_read + 1000))
        used = used - back
      end
    else
      redis.call('INCRBY', s.key, fmt(s.addend))
      redis.call('PEXPIRE', s.key, fmt(last_read + 1000))
      used = used + s.addend
    end
  end
  local remaining = math.max(0, math.floor(s.limit - used))
  out[#out + 1] = s.over and 2 or 1
  out[#out + 1] = remaining
  out[#out + 1] = reset_ms(s)
end
return out
"#;

/// The decision for one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub over: bool,
    pub remaining: u64,
    pub reset_ms: u64,
}

/// The decision for a whole call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub over: bool,
    /// In the order of the checks given.
    pub outcomes: Vec<Outcome>,
}

/// The script, hashed once (EVALSHA, falling back to EVAL after a Redis restart emptied its cache).
pub struct LimitScript {
    script: redis::Script,
}

impl Default for LimitScript {
    fn default() -> Self {
        LimitScript {
            script: redis::Script::new(LUA),
        }
    }
}

impl LimitScript {
    /// Loads the script into Redis's script cache (and so opens the connection).
    pub async fn load<C: ConnectionLike>(&self, conn: &mut C) -> redis::RedisResult<()> {
        self.script.load_async(conn).await?;
        Ok(())
    }

    /// Runs the script for `checks` (at least one) on `conn`.
    pub async fn run<C: ConnectionLike>(
        &self,
        conn: &mut C,
        checks: &[&Check],
    ) -> redis::RedisResult<Decision> {
        let mut invocation = self.script.prepare_invoke();
        for c in checks {
            let flag = |b: bool| if b { "1" } else { "0" };
            invocation
                .key(&c.key)
                .arg(c.window_ms)
                .arg(c.limit)
                .arg(c.addend)
                .arg(flag(c.kind == Kind::Tokens))
                .arg(flag(c.sliding))
                .arg(flag(c.refund));
        }
        let reply: Vec<i64> = invocation.invoke_async(conn).await?;
        decode(&reply, checks.len()).ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::Parse,
                "unexpected reply from the rate-limit script",
            ))
        })
    }
}

/// `[overall, code, remaining, reset_ms, …]` → a decision; `None` when the shape is wrong.
fn decode(reply: &[i64], n: usize) -> Option<Decision> {
    let (&overall, rest) = reply.split_first()?;
    if rest.len() != n * 3 {
        return None;
    }
    let outcomes = rest
        .chunks_exact(3)
        .map(|c| Outcome {
            over: c[0] == 2,
            remaining: u64::try_from(c[1]).unwrap_or(0),
            reset_ms: u64::try_from(c[2]).unwrap_or(0),
        })
        .collect();
    Some(Decision {
        over: overall == 2,
        outcomes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_decode_or_are_refused() {
        assert_eq!(
            decode(&[2, 1, 5, 100, 2, 0, 30], 2),
            Some(Decision {
                over: true,
                outcomes: vec![
                    Outcome {
                        over: false,
                        remaining: 5,
                        reset_ms: 100
                    },
                    Outcome {
                        over: true,
                        remaining: 0,
                        reset_ms: 30
                    },
                ]
            })
        );
        assert_eq!(decode(&[], 0), None);
        assert_eq!(decode(&[1, 1, 2], 1), None);
        assert_eq!(
            decode(&[1, 1, -5, -1], 1).map(|d| d.outcomes[0].remaining),
            Some(0)
        );
    }
}
