//! Telegram's rate limits, kept before each send rather than learnt from 429s: about one
//! message a second per chat, 20 a minute per group, 30 a second overall. Pure: the caller
//! passes the moment, so the arithmetic is tested without sleeping; the outbox asks before
//! every send and sleeps until the answer it gets.
//!
//! A send is counted when it is allowed, not reserved ahead, so one chat that must wait never
//! holds up another.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use teloxide::types::ChatId;

/// At most `sends` messages in any `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub sends: usize,
    pub per: Duration,
}

/// The limits one bot keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// To one chat, private or group.
    pub chat: Rate,
    /// To one group or supergroup, besides `chat`.
    pub group: Rate,
    /// To all chats together.
    pub global: Rate,
}

impl Default for Limits {
    /// Telegram's documented numbers.
    fn default() -> Self {
        Limits {
            chat: Rate {
                sends: 1,
                per: Duration::from_secs(1),
            },
            group: Rate {
                sends: 20,
                per: Duration::from_secs(60),
            },
            global: Rate {
                sends: 30,
                per: Duration::from_secs(1),
            },
        }
    }
}

pub struct Throttle {
    limits: Limits,
    /// Each chat's sends that a limit still counts, oldest first.
    chats: HashMap<ChatId, VecDeque<Instant>>,
    /// All sends the global limit still counts, oldest first.
    all: VecDeque<Instant>,
}

impl Throttle {
    pub fn new(limits: Limits) -> Throttle {
        Throttle {
            limits,
            chats: HashMap::new(),
            all: VecDeque::new(),
        }
    }

    /// A send to `chat` at `now`: `Ok` if every limit allows it (it is counted), else the
    /// earliest moment to ask again. `now` must not go backwards between calls.
    pub fn take(&mut self, chat: ChatId, now: Instant) -> Result<(), Instant> {
        self.forget(now);
        let sent = self.chats.get(&chat);
        let group = (!chat.is_user()).then_some(self.limits.group);
        let free = [Some(self.limits.chat), group]
            .into_iter()
            .flatten()
            .filter_map(|rate| sent.and_then(|sent| free_at(sent, rate)))
            .chain(free_at(&self.all, self.limits.global))
            .max();
        match free.filter(|&at| at > now) {
            Some(at) => Err(at),
            None => {
                self.chats.entry(chat).or_default().push_back(now);
                self.all.push_back(now);
                Ok(())
            }
        }
    }

    /// Drops the sends no limit counts any more, and the chats left with none.
    fn forget(&mut self, now: Instant) {
        let limits = self.limits;
        let counted = |at: &Instant, per: Duration| *at + per > now;
        self.chats.retain(|chat, sent| {
            let window = if chat.is_user() {
                limits.chat.per
            } else {
                limits.chat.per.max(limits.group.per)
            };
            while sent.front().is_some_and(|at| !counted(at, window)) {
                sent.pop_front();
            }
            !sent.is_empty()
        });
        while self
            .all
            .front()
            .is_some_and(|at| !counted(at, self.limits.global.per))
        {
            self.all.pop_front();
        }
    }
}

/// When `rate` allows one more send after `sent`: once the `sends`-th latest has left the
/// window. `None` while fewer were sent.
fn free_at(sent: &VecDeque<Instant>, rate: Rate) -> Option<Instant> {
    let sends = rate.sends.max(1);
    (sent.len() >= sends).then(|| sent[sent.len() - sends] + rate.per)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIVATE: ChatId = ChatId(5);
    const OTHER: ChatId = ChatId(6);
    const GROUP: ChatId = ChatId(-100_123);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends `(chat, at ms)` in order; each expects `Ok` or the ms to ask again at.
    #[track_caller]
    fn check(limits: Limits, sends: &[(ChatId, u64, Result<(), u64>)]) {
        let start = Instant::now();
        let mut throttle = Throttle::new(limits);
        for (index, &(chat, at, expect)) in sends.iter().enumerate() {
            let got = throttle
                .take(chat, start + ms(at))
                .map_err(|later| later.duration_since(start).as_millis() as u64);
            assert_eq!(got, expect, "send {index} to {chat} at {at} ms");
        }
    }

    #[test]
    fn one_chat_gets_a_message_a_second_and_other_chats_do_not_wait_for_it() {
        check(
            Limits::default(),
            &[
                (PRIVATE, 0, Ok(())),
                (PRIVATE, 300, Err(1000)),
                (OTHER, 300, Ok(())),
                (PRIVATE, 999, Err(1000)),
                (PRIVATE, 1000, Ok(())),
                (PRIVATE, 1500, Err(2000)),
            ],
        );
    }

    #[test]
    fn a_group_gets_twenty_a_minute() {
        let mut sends: Vec<_> = (0..20).map(|n| (GROUP, n * 1000, Ok(()))).collect();
        // The 21st waits until the first leaves the minute.
        sends.push((GROUP, 20_000, Err(60_000)));
        sends.push((GROUP, 60_000, Ok(())));
        sends.push((GROUP, 60_500, Err(61_000)));
        // A private chat is not a group.
        sends.push((PRIVATE, 60_500, Ok(())));
        check(Limits::default(), &sends);
    }

    #[test]
    fn all_chats_together_get_thirty_a_second() {
        let mut sends: Vec<_> = (0..30).map(|n| (ChatId(n + 1), 10, Ok(()))).collect();
        sends.push((ChatId(31), 500, Err(1010)));
        sends.push((ChatId(31), 1010, Ok(())));
        check(Limits::default(), &sends);
    }

    #[test]
    fn shrunk_limits_are_kept_too() {
        let limits = Limits {
            chat: Rate {
                sends: 2,
                per: ms(100),
            },
            ..Limits::default()
        };
        check(
            limits,
            &[
                (PRIVATE, 0, Ok(())),
                (PRIVATE, 10, Ok(())),
                (PRIVATE, 20, Err(100)),
                (PRIVATE, 100, Ok(())),
                (PRIVATE, 105, Err(110)),
            ],
        );
    }

    #[test]
    fn sends_no_limit_counts_are_forgotten() {
        let start = Instant::now();
        let mut throttle = Throttle::new(Limits::default());
        for chat in 1..=10 {
            throttle.take(ChatId(chat), start).unwrap();
        }
        throttle.take(GROUP, start).unwrap();
        throttle.take(PRIVATE, start + ms(2000)).unwrap();
        assert_eq!(throttle.chats.len(), 2, "the group's minute is not over");
        throttle.take(PRIVATE, start + ms(61_000)).unwrap();
        assert_eq!(throttle.chats.len(), 1);
        assert_eq!(throttle.all.len(), 1);
    }
}
