//! defaults < file < environment, through `Config::load` (figment::Jail: temp dir + env).

// `Jail::expect_with` takes closures returning `figment::Result`, whose error is large.
#![allow(clippy::result_large_err)]

use std::path::Path;

use figment::Jail;

use super::{edited, Del, Set};
use crate::Config;

fn load(path: &str) -> Result<Config, crate::ConfigErrors> {
    Config::load(Some(Path::new(path)))
}

#[test]
fn env_overrides_file_overrides_defaults() {
    Jail::expect_with(|jail| {
        let file = edited(&[
            Del("local.listen"),
            Del("local.probe_concurrency"),
            Set("local.log_level", r#""debug""#),
        ]);
        jail.create_file("quorumgate.toml", &file)?;
        jail.set_env("QUORUMGATE_LOCAL__LISTEN", "127.0.0.1:9000");
        jail.set_env("QUORUMGATE_LOCAL__AGENT_ID", "usw2");
        jail.set_env("QUORUMGATE_CLUSTER__ROUND_INTERVAL", "4s");
        jail.set_env("QUORUMGATE_CONFIG", "/etc/quorumgate/other.toml"); // read by the CLI, not a setting

        let c = load("quorumgate.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.local.listen, "127.0.0.1:9000".parse().unwrap()); // env over file default
        assert_eq!(c.local.agent_id.as_str(), "usw2"); // env over file
        assert_eq!(c.shared.cluster.round_interval_ms, 4000); // env over file (shared)
        assert_eq!(c.local.log_level, "debug"); // file over default
        assert_eq!(c.local.probe_concurrency, 64); // default
        Ok(())
    });
}

#[test]
fn file_and_string_agree_without_env() {
    Jail::expect_with(|jail| {
        jail.create_file("quorumgate.toml", &edited(&[]))?;
        let from_file = load("quorumgate.toml").unwrap();
        let from_str = Config::from_toml_str(&edited(&[])).unwrap();
        assert_eq!(from_file.digest, from_str.digest);
        assert_eq!(from_file.local, from_str.local);
        Ok(())
    });
}

#[test]
fn env_values_keep_their_text() {
    Jail::expect_with(|jail| {
        jail.create_file("quorumgate.toml", &edited(&[]))?;
        jail.set_env("QUORUMGATE_LOCAL__LOG_LEVEL", "warn,quorumgate=debug");
        jail.set_env("QUORUMGATE_LOCAL__JITTER_SEED", "42");
        jail.set_env("QUORUMGATE_LOCAL__STATE_DIR", "/srv/quorumgate");
        let c = load("quorumgate.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.local.log_level, "warn,quorumgate=debug");
        assert_eq!(c.local.jitter_seed, Some(42));
        assert_eq!(c.local.state_dir, Path::new("/srv/quorumgate"));
        Ok(())
    });
}

#[test]
fn env_typo_fails_closed_and_names_the_variable() {
    Jail::expect_with(|jail| {
        jail.create_file("quorumgate.toml", &edited(&[]))?;
        jail.set_env("QUORUMGATE_LOCAL_AGENT_ID", "usw2"); // one underscore: not nested
        let errs = load("quorumgate.toml").unwrap_err();
        let e = errs
            .at("local_agent_id")
            .unwrap_or_else(|| panic!("{errs}"));
        assert!(e.problem.contains("unknown key"), "{e}");
        assert!(
            e.problem
                .contains("environment variable QUORUMGATE_LOCAL_AGENT_ID"),
            "{e}"
        );
        Ok(())
    });
}

#[test]
fn an_unknown_env_section_names_the_whole_variable() {
    Jail::expect_with(|jail| {
        jail.create_file("quorumgate.toml", &edited(&[]))?;
        jail.set_env("QUORUMGATE_CLUSTR__NAME", "x"); // a typo in the section
        let errs = load("quorumgate.toml").unwrap_err();
        let e = errs.at("clustr").unwrap_or_else(|| panic!("{errs}"));
        assert!(
            e.problem
                .ends_with("(set by environment variable QUORUMGATE_CLUSTR__NAME)"),
            "{e}"
        );
        assert!(e.fix.contains("`cluster`"), "{e}");
        assert!(e.fix.contains("unset QUORUMGATE_CLUSTR__NAME"), "{e}");
        Ok(())
    });
}

#[test]
fn bad_env_value_names_the_variable() {
    Jail::expect_with(|jail| {
        jail.create_file("quorumgate.toml", &edited(&[]))?;
        jail.set_env("QUORUMGATE_LOCAL__LISTEN", "localhost");
        jail.set_env("QUORUMGATE_LOCAL__TLS__CERT_FILE", "");
        let errs = load("quorumgate.toml").unwrap_err();
        assert_eq!(
            errs.paths(),
            ["local.listen", "local.tls.cert_file"],
            "{errs}"
        );
        assert!(
            errs.errors[0]
                .problem
                .ends_with("(set by environment variable QUORUMGATE_LOCAL__LISTEN)"),
            "{errs}"
        );
        assert!(
            errs.errors[1]
                .problem
                .contains("QUORUMGATE_LOCAL__TLS__CERT_FILE"),
            "{errs}"
        );
        Ok(())
    });
}

#[test]
fn numeric_agent_id_from_env_is_an_id() {
    Jail::expect_with(|jail| {
        jail.create_file("quorumgate.toml", &edited(&[Set("members.1.id", r#""2""#)]))?;
        jail.set_env("QUORUMGATE_LOCAL__AGENT_ID", "2");
        assert_eq!(
            load("quorumgate.toml")
                .unwrap_or_else(|e| panic!("{e}"))
                .local
                .agent_id
                .as_str(),
            "2"
        );
        Ok(())
    });
}

#[test]
fn missing_file_is_an_error_naming_it() {
    Jail::expect_with(|jail| {
        let errs = load("nope/quorumgate.toml").unwrap_err();
        assert_eq!(errs.paths(), ["nope/quorumgate.toml"]);
        assert!(errs.errors[0].problem.contains("cannot read"), "{errs}");
        jail.create_dir("adir")?;
        assert!(load("adir").unwrap_err().errors[0]
            .problem
            .contains("not a regular file"));
        Ok(())
    });
}

#[test]
fn file_syntax_error_names_the_file() {
    Jail::expect_with(|jail| {
        jail.create_file("broken.toml", "[cluster\n")?;
        let errs = load("broken.toml").unwrap_err();
        assert!(errs.errors[0].path.ends_with("broken.toml"), "{errs}");
        Ok(())
    });
}

#[test]
fn local_files_are_read_from_an_invalid_config_and_the_environment() {
    Jail::expect_with(|jail| {
        // Invalid (a check's timeout), but its files are still named.
        jail.create_file(
            "quorumgate.toml",
            &edited(&[
                Set("checks.0.timeout", r#""9s""#),
                Del("local.key_file"),
                Set("local.state_dir", r#""/srv/qg""#),
                Set(
                    "local.tls",
                    r#"{ cert_file = "/etc/qg/c.pem", key_file = "/etc/qg/c.key" }"#,
                ),
            ]),
        )?;
        jail.set_env("QUORUMGATE_LOCAL__TLS__KEY_FILE", "/run/creds/tls.key");
        assert!(load("quorumgate.toml").is_err());
        let files = crate::local_files(std::path::Path::new("quorumgate.toml"));
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(f, p)| (f.as_str(), p.to_str().unwrap()))
            .collect();
        assert_eq!(
            files[..3],
            [
                ("local.key_file", "/srv/qg/agent.key"),
                ("local.tls.cert_file", "/etc/qg/c.pem"),
                ("local.tls.key_file", "/run/creds/tls.key"),
            ],
            "{files:?}"
        );
        Ok(())
    });
}
