//! Fuzzing entry point, shared by the cargo-fuzz target `config` (`fuzz/`) and the
//! corpus-replay test `config/tests/fuzz_corpus.rs`, so the stable test suite feeds every
//! committed corpus file through exactly the code the fuzzer ran. Not part of the API.

use crate::{digest_of, Config};

/// How far one input got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A validated [`Config`].
    Valid,
    /// Refused with this many errors (always at least one).
    Invalid(usize),
}

/// Fuzz target `config`: TOML text (bytes taken as UTF-8, invalid sequences replaced) through
/// [`Config::from_toml_str`], the same path as `quorumgate check --stdin`.
///
/// Checks: loading never panics; a refusal carries at least one error, each of which renders;
/// a valid config's digest is [`digest_of`] its shared part and loading is deterministic.
pub fn config(input: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(input);
    match Config::from_toml_str(&text) {
        Ok(cfg) => {
            assert_eq!(
                cfg.digest,
                digest_of(&cfg.shared),
                "digest is not of the shared part"
            );
            let again = Config::from_toml_str(&text)
                .unwrap_or_else(|e| panic!("a valid config failed on a second load: {e}"));
            assert_eq!(again.digest, cfg.digest, "loading is not deterministic");
            for w in &cfg.warnings {
                let _ = w.to_string();
            }
            Outcome::Valid
        }
        Err(e) => {
            assert!(!e.errors.is_empty(), "a refusal without an error");
            let _ = e.to_string();
            Outcome::Invalid(e.errors.len())
        }
    }
}
