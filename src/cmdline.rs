//! The guest command line (`extra=` in the xl config): the kernel's own
//! options and the application's words.
//!
//! Words are separated by whitespace. A word starting with `xf.` is a kernel
//! option (`xf.key=value`); every other word belongs to the application and
//! is handed to it unchanged, in order ([`crate::args`]). An unknown or
//! malformed kernel option is an error that the kernel reports as
//! `error: cmdline: <message>` before crashing, so a typo never silently
//! runs with a default. Pure code, tested on the host.

use core::fmt;

/// Prefix of the kernel's own options.
pub const KERNEL_PREFIX: &str = "xf.";

/// The kernel's options; `Default` is what an empty command line means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOptions {
    /// `xf.xs-timeout=<ms>` (100..=600000): how long one XenStore request
    /// may take before it fails with a timeout.
    pub xs_timeout_ms: Option<u32>,
}

/// Why a command line was rejected. Borrows the offending text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError<'a> {
    /// The command line is not UTF-8.
    NotUtf8,
    /// A word whose key no option has.
    UnknownOption(&'a str),
    /// `key` given without `=value` for an option that needs one.
    MissingValue(&'a str),
    /// `key=value` with a value the option does not accept.
    BadValue {
        /// The option's key.
        option: &'a str,
        /// The rejected value.
        value: &'a str,
        /// What the option accepts.
        expected: &'a str,
    },
    /// The same option twice.
    Duplicate(&'a str),
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::NotUtf8 => write!(f, "not valid UTF-8"),
            CmdlineError::UnknownOption(o) => write!(f, "unknown option '{o}'"),
            CmdlineError::MissingValue(o) => write!(f, "option '{o}' needs a value"),
            CmdlineError::BadValue {
                option,
                value,
                expected,
            } => write!(
                f,
                "invalid value '{value}' for option '{option}' (expected {expected})"
            ),
            CmdlineError::Duplicate(o) => write!(f, "option '{o}' given twice"),
        }
    }
}

impl core::error::Error for CmdlineError<'_> {}

/// Splits a word into `key` and optional `value`.
pub fn key_value(word: &str) -> (&str, Option<&str>) {
    match word.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (word, None),
    }
}

/// The command line as UTF-8.
pub fn as_str(raw: &[u8]) -> Result<&str, CmdlineError<'_>> {
    core::str::from_utf8(raw).map_err(|_| CmdlineError::NotUtf8)
}

/// The application's words: every word that is not a kernel option.
pub fn app_words(s: &str) -> impl Iterator<Item = &str> + Clone {
    s.split_ascii_whitespace()
        .filter(|w| !w.starts_with(KERNEL_PREFIX))
}

/// Parses the kernel's options (the `xf.` words); other words are ignored.
pub fn kernel_options(s: &str) -> Result<KernelOptions, CmdlineError<'_>> {
    let mut opts = KernelOptions::default();
    for word in s.split_ascii_whitespace() {
        if !word.starts_with(KERNEL_PREFIX) {
            continue;
        }
        let (key, value) = key_value(word);
        match key {
            "xf.xs-timeout" => {
                if opts.xs_timeout_ms.is_some() {
                    return Err(CmdlineError::Duplicate(key));
                }
                let value = value.ok_or(CmdlineError::MissingValue(key))?;
                opts.xs_timeout_ms = Some(parse_u32(key, value, 100..=600_000, "100..600000 ms")?);
            }
            _ => return Err(CmdlineError::UnknownOption(key)),
        }
    }
    Ok(opts)
}

/// A decimal number in `range`, or [`CmdlineError::BadValue`] naming the
/// option, the value and `expected`.
pub fn parse_u32<'a>(
    option: &'a str,
    value: &'a str,
    range: core::ops::RangeInclusive<u32>,
    expected: &'a str,
) -> Result<u32, CmdlineError<'a>> {
    let bad = CmdlineError::BadValue {
        option,
        value,
        expected,
    };
    let n: u32 = value.parse().map_err(|_| bad)?;
    if range.contains(&n) {
        Ok(n)
    } else {
        Err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    #[test]
    fn empty_is_default() {
        assert_eq!(kernel_options(""), Ok(KernelOptions::default()));
        assert_eq!(kernel_options("  \t "), Ok(KernelOptions::default()));
        assert_eq!(app_words("").count(), 0);
    }

    #[test]
    fn words_are_split_between_kernel_and_application() {
        let s = " test=soak xf.xs-timeout=2500  secs=9 --verbose ";
        assert_eq!(
            kernel_options(s).unwrap().xs_timeout_ms,
            Some(2500),
            "kernel option parsed"
        );
        let app: Vec<&str> = app_words(s).collect();
        assert_eq!(app, ["test=soak", "secs=9", "--verbose"]);
    }

    #[test]
    fn bad_kernel_options_are_named() {
        assert_eq!(
            kernel_options("xf.bogus=1"),
            Err(CmdlineError::UnknownOption("xf.bogus"))
        );
        assert_eq!(
            kernel_options("xf.xs-timeout"),
            Err(CmdlineError::MissingValue("xf.xs-timeout"))
        );
        for bad in ["0", "99", "600001", "-1", "1s", "", "0x10"] {
            let s = std::format!("xf.xs-timeout={bad}");
            let e = kernel_options(&s).unwrap_err();
            assert!(
                matches!(e, CmdlineError::BadValue { option: "xf.xs-timeout", value, .. } if value == bad),
                "{bad}: {e:?}"
            );
        }
        assert_eq!(
            kernel_options("xf.xs-timeout=100 xf.xs-timeout=200"),
            Err(CmdlineError::Duplicate("xf.xs-timeout"))
        );
        assert_eq!(as_str(b"x=\xff"), Err(CmdlineError::NotUtf8));
    }

    #[test]
    fn messages() {
        assert_eq!(
            kernel_options("xf.nope").unwrap_err().to_string(),
            "unknown option 'xf.nope'"
        );
        assert_eq!(
            kernel_options("xf.xs-timeout=5").unwrap_err().to_string(),
            "invalid value '5' for option 'xf.xs-timeout' (expected 100..600000 ms)"
        );
    }
}
