//! Validated identifiers. Parse, don't validate: once you hold an `AgentId` it is well formed.

use std::fmt;
use std::str::FromStr;

/// Longest agent or check identifier, in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Longest reason code, in bytes. Reasons are metric labels: short and few.
pub const MAX_REASON_LEN: usize = 32;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("is {len} bytes long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("contains {ch:?}; allowed are {allowed}")]
    BadChar { ch: char, allowed: &'static str },
}

fn check_token(
    s: &str,
    max: usize,
    ok: fn(u8) -> bool,
    allowed: &'static str,
) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > max {
        return Err(IdError::TooLong { len: s.len(), max });
    }
    if let Some(ch) = s.chars().find(|c| !c.is_ascii() || !ok(*c as u8)) {
        return Err(IdError::BadChar { ch, allowed });
    }
    Ok(())
}

fn id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

fn reason_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

macro_rules! token_type {
    ($(#[$doc:meta])* $name:ident, $max:expr, $ok:expr, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `s`.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check_token(&s, $max, $ok, $allowed)?;
                Ok(Self(s))
            }

            /// The identifier as a string slice.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

token_type!(
    /// A configured agent (member) identifier: 1–64 bytes of `[A-Za-z0-9._-]`.
    AgentId, MAX_ID_LEN, id_byte, "ASCII letters, digits, '-', '_' and '.'"
);
token_type!(
    /// A configured check identifier: 1–64 bytes of `[A-Za-z0-9._-]`.
    CheckId, MAX_ID_LEN, id_byte, "ASCII letters, digits, '-', '_' and '.'"
);
token_type!(
    /// A configured gate identifier: 1–64 bytes of `[A-Za-z0-9._-]`.
    GateId, MAX_ID_LEN, id_byte, "ASCII letters, digits, '-', '_' and '.'"
);
token_type!(
    /// A target of a gate (a region or endpoint that DNS can send traffic to): 1–64 bytes of
    /// `[A-Za-z0-9._-]`.
    TargetId, MAX_ID_LEN, id_byte, "ASCII letters, digits, '-', '_' and '.'"
);
token_type!(
    /// A configured operator (a person or pipeline allowed to sign commands): 1–64 bytes of
    /// `[A-Za-z0-9._-]`.
    OperatorId, MAX_ID_LEN, id_byte, "ASCII letters, digits, '-', '_' and '.'"
);
token_type!(
    /// A low-cardinality reason code (`ok`, `timeout`, `connect_refused`, …): 1–32 bytes of
    /// `[a-z0-9_]`. It becomes a metric label, so it never carries free text.
    Reason, MAX_REASON_LEN, reason_byte, "lowercase ASCII letters, digits and '_'"
);

impl Reason {
    /// A reason from a static code known to be valid.
    ///
    /// # Panics
    /// If `code` is not a valid reason; only ever called with literals in this workspace.
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn from_static(code: &'static str) -> Self {
        Self::new(code).expect("static reason codes are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_and_reject() {
        assert!(AgentId::new("use1-a.prod_2").is_ok());
        assert_eq!(AgentId::new(""), Err(IdError::Empty));
        assert!(matches!(
            AgentId::new("a b"),
            Err(IdError::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(
            CheckId::new("x".repeat(65)),
            Err(IdError::TooLong { len: 65, .. })
        ));
        assert!(matches!(CheckId::new("é"), Err(IdError::BadChar { .. })));
        assert!(Reason::new("connect_refused").is_ok());
        assert!(Reason::new("Timeout").is_err());
    }
}
