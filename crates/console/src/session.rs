//! The console's logons: a session per logon, named by a random token in
//! a `__Host-` cookie (Secure, HttpOnly, SameSite=Strict, Path=/), with a
//! CSRF token of its own that every change must carry back. Sessions end
//! on logout, after [`IDLE`] without a request, or when the service
//! stops (they live in memory only).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name (`__Host-`: the browser keeps it only if
/// it is Secure, for `/`, with no Domain).
pub const COOKIE: &str = "__Host-inetsrv-session";
/// How long a session lasts without a request.
pub const IDLE: Duration = Duration::from_secs(20 * 60);
/// The most sessions at once; the oldest goes for a new one.
const MAX_SESSIONS: usize = 1024;

/// A logged-on administrator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub csrf: String,
}

struct Entry {
    session: Session,
    last: Instant,
}

#[derive(Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, Entry>>,
}

/// 32 random bytes, in hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the system's random source");
    hex::encode(bytes)
}

/// Whether two tokens are equal, in time that does not depend on where
/// they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// A new session for `user`: its cookie's token and the session.
    pub fn create(&self, user: &str) -> (String, Session) {
        let mut map = self.by_token.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, e| e.last.elapsed() < IDLE);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(t, _)| t.clone())
            {
                map.remove(&oldest);
            }
        }
        let token = random_token();
        let session = Session {
            user: user.to_string(),
            csrf: random_token(),
        };
        map.insert(
            token.clone(),
            Entry {
                session: session.clone(),
                last: Instant::now(),
            },
        );
        (token, session)
    }

    /// The session a request's cookie names, if it is still open.
    pub fn find(&self, token: &str) -> Option<Session> {
        let mut map = self.by_token.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.get_mut(token)?;
        if entry.last.elapsed() >= IDLE {
            map.remove(token);
            return None;
        }
        entry.last = Instant::now();
        Some(entry.session.clone())
    }

    pub fn end(&self, token: &str) {
        self.by_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }
}

/// The session token in a Cookie header.
pub fn token_of(cookie_header: &str) -> Option<&str> {
    cookie_header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE && !value.is_empty()).then_some(value)
    })
}

/// The Set-Cookie of a new session.
pub fn set_cookie(token: &str) -> String {
    format!("{COOKIE}={token}; Secure; HttpOnly; SameSite=Strict; Path=/")
}

/// The Set-Cookie that ends one.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_and_ends() {
        let sessions = Sessions::default();
        let (token, session) = sessions.create("boss");
        assert_eq!(session.user, "boss");
        assert_eq!(session.csrf.len(), 64);
        let header = format!("theme=dark; {COOKIE}={token}; other=1");
        assert_eq!(token_of(&header), Some(token.as_str()));
        assert_eq!(sessions.find(&token), Some(session));
        sessions.end(&token);
        assert_eq!(sessions.find(&token), None);
        assert_eq!(token_of("theme=dark"), None);
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
    }
}
