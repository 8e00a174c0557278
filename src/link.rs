//! How the links to other processes (NATS servers, the primary) appear in logs and errors:
//! URLs without their user-info, a failure's whole cause chain with each cause once, and the
//! up/down history of a link reduced to the lines an operator needs (one warning when it goes
//! down or its cause changes, a reminder now and then while it stays down, one line when it is
//! back), instead of one line per retry.

use std::error::Error;
use std::time::{Duration, Instant};

/// `url` without user-info (`nats://user:secret@host:4222` → `nats://host:4222`): URLs are
/// shown and logged, passwords are not.
pub fn display_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The authority ends at the first '/', '?' or '#'; user-info ends at its last '@'.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `e` and every cause in its source chain, joined by `": "`, leaving out a cause whose text the
/// line already holds (many errors repeat their source in their own message, others do not).
pub fn error_chain(e: &(dyn Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

/// What to log about a link after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The link went down, or failed with a different cause than last noted.
    Down,
    /// Still down with the same cause; `for_` since it went down.
    StillDown {
        /// How long it has been down.
        for_: Duration,
    },
    /// Up again after being down for this long.
    Back {
        /// How long it was down.
        after: Duration,
    },
    /// Up for the first time (after failed attempts, if any).
    Up,
}

/// The state of one link, for deciding what is worth a log line. Pure (the caller passes the
/// time), so the rate limiting is tested without waiting.
#[derive(Debug)]
pub struct LinkState {
    /// How often a link that stays down with the same cause is mentioned again.
    remind_every: Duration,
    ever_up: bool,
    down: Option<Down>,
}

#[derive(Debug)]
struct Down {
    since: Instant,
    cause: String,
    noted: Instant,
}

impl LinkState {
    /// A link that has not been tried yet.
    pub fn new(remind_every: Duration) -> LinkState {
        LinkState {
            remind_every,
            ever_up: false,
            down: None,
        }
    }

    /// An attempt failed with `cause` (a short classification: the same text for the same
    /// kind of failure); returns what to log, if anything.
    pub fn failed(&mut self, cause: &str, now: Instant) -> Option<Note> {
        match &mut self.down {
            None => {
                self.down = Some(Down {
                    since: now,
                    cause: cause.to_string(),
                    noted: now,
                });
                Some(Note::Down)
            }
            Some(d) if d.cause != cause => {
                d.cause = cause.to_string();
                d.noted = now;
                Some(Note::Down)
            }
            Some(d) if now.duration_since(d.noted) >= self.remind_every => {
                d.noted = now;
                Some(Note::StillDown {
                    for_: now.duration_since(d.since),
                })
            }
            Some(_) => None,
        }
    }

    /// The link is up; returns what to log (every transition to up is worth a line).
    pub fn connected(&mut self, now: Instant) -> Note {
        let was_up = std::mem::replace(&mut self.ever_up, true);
        let down = self.down.take();
        if !was_up {
            return Note::Up;
        }
        Note::Back {
            after: down.map_or(Duration::ZERO, |d| now.duration_since(d.since)),
        }
    }

    /// The link dropped (an established connection closed); the next failure is a new `Down`.
    pub fn disconnected(&mut self, now: Instant) {
        if self.down.is_none() {
            self.down = Some(Down {
                since: now,
                cause: String::new(),
                noted: now,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_user_info_only() {
        let cases = [
            ("nats://user:secret@host:4222", "nats://host:4222"),
            ("http://a:b@primary:9090/x?y=1", "http://primary:9090/x?y=1"),
            ("http://primary:9090/a@b", "http://primary:9090/a@b"),
            ("http://tok@[::1]:9090", "http://[::1]:9090"),
            ("nats://host:4222", "nats://host:4222"),
            ("host:4222", "host:4222"),
        ];
        for (url, shown) in cases {
            assert_eq!(display_url(url), shown, "{url}");
        }
    }

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for E {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn Error + 'static))
        }
    }

    #[test]
    fn each_cause_appears_once() {
        let refused = E("Connection refused (os error 111)", None);
        let e = E(
            "error sending request",
            Some(Box::new(E("tcp connect error", Some(Box::new(refused))))),
        );
        assert_eq!(
            error_chain(&e),
            "error sending request: tcp connect error: Connection refused (os error 111)"
        );
        // A message that already holds its source's text does not get it again.
        let e = E(
            "config file x: No such file",
            Some(Box::new(E("No such file", None))),
        );
        assert_eq!(error_chain(&e), "config file x: No such file");
    }

    #[test]
    fn a_link_that_stays_down_is_noted_once_then_reminded() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut link = LinkState::new(s(60));
        assert_eq!(link.connected(t0), Note::Up);
        link.disconnected(t0);
        assert_eq!(link.failed("refused", t0), Some(Note::Down));
        for i in 1..60 {
            assert_eq!(link.failed("refused", t0 + s(i)), None, "retry {i}");
        }
        assert_eq!(
            link.failed("refused", t0 + s(60)),
            Some(Note::StillDown { for_: s(60) })
        );
        assert_eq!(link.failed("refused", t0 + s(61)), None);
        assert_eq!(link.failed("timed out", t0 + s(62)), Some(Note::Down));
        assert_eq!(link.connected(t0 + s(70)), Note::Back { after: s(70) });
        assert_eq!(link.failed("refused", t0 + s(80)), Some(Note::Down));
    }

    #[test]
    fn a_link_that_was_never_up_comes_up_once() {
        let t0 = Instant::now();
        let mut link = LinkState::new(Duration::from_secs(60));
        assert_eq!(link.failed("refused", t0), Some(Note::Down));
        assert_eq!(link.failed("refused", t0), None);
        assert_eq!(link.connected(t0), Note::Up);
    }

    #[test]
    fn first_connection_then_a_drop_and_back() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut link = LinkState::new(s(60));
        assert_eq!(link.connected(t0), Note::Up);
        link.disconnected(t0 + s(5));
        assert_eq!(link.failed("refused", t0 + s(6)), Some(Note::Down));
        assert_eq!(link.failed("refused", t0 + s(7)), None);
        assert_eq!(link.connected(t0 + s(9)), Note::Back { after: s(4) });
    }

    /// A retry loop as the NATS and replication links run one (back-off doubling from 100 ms
    /// to 5 s), on tokio's paused clock through a ten-minute outage whose cause changes once:
    /// the log gets one line when the link goes down and when the cause changes, a reminder at
    /// the first retry a minute or more after the last line (never sooner, and never more than
    /// one back-off later), and one line when it is back, with the outage's length.
    #[tokio::test(start_paused = true)]
    async fn an_outage_under_backoff_is_noted_once_a_minute() {
        let every = Duration::from_secs(60);
        let now = || tokio::time::Instant::now().into_std();
        let mut link = LinkState::new(every);
        assert_eq!(link.connected(now()), Note::Up);
        let down_at = now();
        link.disconnected(down_at);
        let max_backoff = Duration::from_secs(5);
        let mut backoff = Duration::from_millis(100);
        let mut lines = vec![(Duration::ZERO, Note::Down)];
        assert_eq!(link.failed("refused", now()), Some(Note::Down));
        let mut retries = 0;
        while now() - down_at < Duration::from_secs(600) {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(max_backoff);
            retries += 1;
            let cause = if now() - down_at < Duration::from_secs(250) {
                "refused"
            } else {
                "timed out"
            };
            if let Some(note) = link.failed(cause, now()) {
                lines.push((now() - down_at, note));
            }
        }
        let outage = now() - down_at;
        assert_eq!(link.connected(now()), Note::Back { after: outage });

        assert!(retries > 100, "{retries} retries");
        let downs: Vec<Duration> = lines
            .iter()
            .filter(|(_, n)| *n == Note::Down)
            .map(|(at, _)| *at)
            .collect();
        assert_eq!(downs.len(), 2, "down, then the new cause: {lines:?}");
        assert!(downs[1] >= Duration::from_secs(250) && downs[1] < Duration::from_secs(255));
        for pair in lines.windows(2) {
            let ((before, _), (at, note)) = (pair[0].clone(), pair[1].clone());
            if let Note::StillDown { for_ } = note {
                assert_eq!(for_, at, "reminders say how long the link has been down");
                assert!(
                    at - before >= every && at - before < every + max_backoff,
                    "a reminder {:?} after the last line: {lines:?}",
                    at - before
                );
            }
        }
        // About ten minutes, one line a minute: no more, and none missing.
        assert!((10..=12).contains(&lines.len()), "{lines:?}");
    }
}
