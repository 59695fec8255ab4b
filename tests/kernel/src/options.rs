//! The test kernel's command-line words (`test=<name>`, `secs=<n>`): the
//! application words of `extra=` (kernel options `xf.*` are the kernel's).
//! Every word must be known, so a typo never silently runs the wrong
//! scenario. Pure code, tested on the host.

extern crate alloc;

use core::fmt;

use xenfront::cmdline::{key_value, parse_u32, CmdlineError};

/// Parsed words; `Default` is what an empty command line means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// `test=<name>`: the scenario (`hello` if absent).
    pub test: &'static str,
    /// `secs=N` (1..=86400): how long a timed scenario (soak) runs.
    pub secs: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            test: "hello",
            secs: None,
        }
    }
}

/// Why the words were rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionsError<'a> {
    /// A malformed or unknown word.
    Cmdline(CmdlineError<'a>),
    /// `test=` names no scenario; `known` lists them all.
    UnknownTest {
        /// The name given.
        name: &'a str,
        /// Every scenario's name.
        known: &'a [&'a str],
    },
}

impl fmt::Display for OptionsError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsError::Cmdline(e) => write!(f, "{e}"),
            OptionsError::UnknownTest { name, known } => {
                write!(
                    f,
                    "invalid value '{name}' for option 'test' (expected one of:"
                )?;
                for k in known.iter() {
                    write!(f, " {k}")?;
                }
                write!(f, ")")
            }
        }
    }
}

/// Parses the words; `known` are the scenario names `test=` accepts.
pub fn parse<'a>(
    words: impl Iterator<Item = &'a str>,
    known: &'a [&'static str],
) -> Result<Options, OptionsError<'a>> {
    let mut opts = Options::default();
    let (mut seen_test, mut seen_secs) = (false, false);
    for word in words {
        let (key, value) = key_value(word);
        let dup = |seen: &mut bool| {
            if core::mem::replace(seen, true) {
                Err(OptionsError::Cmdline(CmdlineError::Duplicate(key)))
            } else {
                Ok(())
            }
        };
        let value = || value.ok_or(OptionsError::Cmdline(CmdlineError::MissingValue(key)));
        match key {
            "test" => {
                dup(&mut seen_test)?;
                let name = value()?;
                opts.test = known
                    .iter()
                    .copied()
                    .find(|k| *k == name)
                    .ok_or(OptionsError::UnknownTest { name, known })?;
            }
            "secs" => {
                dup(&mut seen_secs)?;
                let n = parse_u32(key, value()?, 1..=86_400, "1..86400")
                    .map_err(OptionsError::Cmdline)?;
                opts.secs = Some(n);
            }
            _ => return Err(OptionsError::Cmdline(CmdlineError::UnknownOption(key))),
        }
    }
    Ok(opts)
}

/// A decimal XenStore value that Dom0 publishes for a scenario: `Ok(None)`
/// while it is still empty; anything but digits is an error naming the
/// path and the value (never waited out as a timeout).
pub fn decimal_key(path: &str, v: &[u8]) -> Result<Option<u32>, alloc::string::String> {
    if v.is_empty() {
        return Ok(None);
    }
    let bad = || {
        alloc::format!(
            "{path}: bad value {:?} (expected a decimal number)",
            alloc::string::String::from_utf8_lossy(v)
        )
    };
    let s = core::str::from_utf8(v).map_err(|_| bad())?;
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse().map(Some).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_keys() {
        assert_eq!(decimal_key("k", b""), Ok(None));
        assert_eq!(decimal_key("k", b"12"), Ok(Some(12)));
        for bad in [&b"12\0"[..], b"0x10", b"-1", b" 1", b"99999999999", b"\xff"] {
            let e = decimal_key("data/x", bad).unwrap_err();
            assert!(e.starts_with("data/x: bad value "), "{e}");
        }
        assert_eq!(
            decimal_key("data/x", b"0x10").unwrap_err(),
            "data/x: bad value \"0x10\" (expected a decimal number)"
        );
    }

    const KNOWN: &[&str] = &["hello", "panic", "soak"];

    fn p(s: &str) -> Result<Options, OptionsError<'_>> {
        parse(s.split_ascii_whitespace(), KNOWN)
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(p(""), Ok(Options::default()));
        assert_eq!(p("  \t "), Ok(Options::default()));
    }

    #[test]
    fn words() {
        assert_eq!(p("test=panic").unwrap().test, "panic");
        let o = p(" test=soak  secs=90 ").unwrap();
        assert_eq!((o.test, o.secs), ("soak", Some(90)));
    }

    #[test]
    fn errors() {
        let cmd = |e| Err(OptionsError::Cmdline(e));
        assert_eq!(p("bogus"), cmd(CmdlineError::UnknownOption("bogus")));
        assert_eq!(p("test"), cmd(CmdlineError::MissingValue("test")));
        assert_eq!(
            p("test=hello test=panic"),
            cmd(CmdlineError::Duplicate("test"))
        );
        assert_eq!(
            p("test=nope"),
            Err(OptionsError::UnknownTest {
                name: "nope",
                known: KNOWN
            })
        );
        for bad in ["secs=0", "secs=86401", "secs=-1", "secs=1s", "secs="] {
            assert!(
                matches!(
                    p(bad),
                    Err(OptionsError::Cmdline(CmdlineError::BadValue {
                        option: "secs",
                        ..
                    }))
                ),
                "{bad}"
            );
        }
        assert_eq!(p("secs=1 secs=2"), cmd(CmdlineError::Duplicate("secs")));
    }

    #[test]
    fn messages() {
        use std::string::ToString;
        assert_eq!(
            p("bogus").unwrap_err().to_string(),
            "unknown option 'bogus'"
        );
        assert_eq!(
            p("test=x").unwrap_err().to_string(),
            "invalid value 'x' for option 'test' (expected one of: hello panic soak)"
        );
        assert_eq!(
            p("test").unwrap_err().to_string(),
            "option 'test' needs a value"
        );
    }
}
