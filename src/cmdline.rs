//! Kernel command line (`extra=` in the xl config) → typed options.
//!
//! Syntax: whitespace-separated `key=value` or `key` words. Every word must be
//! known; anything else is an error the kernel reports as
//! `error: cmdline: <message>` before crashing, so a typo never silently runs
//! the wrong scenario. Pure code, tested on the host.

use core::fmt;

/// In-guest scenario selected with `test=<name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    /// Boot, print the banner, report SUCCESS, power off.
    Hello,
    /// Panic on purpose (checks the panic path and the crash reason).
    Panic,
    /// Read one line of console input and print it back.
    Echo,
    /// One-shot timers and sleeps measured against the clock; wall clock.
    Timer,
    /// Upcalls through a loopback event channel; the starvation bound.
    Events,
    /// Event-channel ping-pong with a Dom0 peer (xf-evtchn-echo).
    EvtchnEcho,
    /// Read an unmapped address: the #PF handler reports and crashes.
    PageFault,
    /// `ud2`: the #UD handler reports and crashes.
    InvalidOp,
    /// Divide by zero: the #DE handler reports and crashes.
    DivideError,
    /// XenStore: read/write/watch with Dom0, transaction conflict, ENOENT,
    /// round trips/s.
    Xenstore,
    /// Grants: Dom0 maps our page, deferred revoke, exhaustion, ops/s, and
    /// mapping a page Dom0 granted us.
    Grant,
    /// Print `ready`, then wait for `xl shutdown` / `xl reboot`.
    Idle,
    /// Demo ring, guest frontend against Dom0 `xf-ring-back`.
    DemoFront,
    /// Demo ring against a faulty `xf-ring-back` (dies, bad id, bad
    /// index): a typed disconnect and clean-up is the success.
    DemoFrontFault,
    /// Demo ring, guest backend for Dom0 `xf-ring-front`.
    DemoBack,
    /// vchan server (echo) for Dom0 `vchan-socket-proxy`.
    VchanServer,
    /// vchan client (echo) of Dom0 `vchan-socket-proxy -m server`.
    VchanClient,
    /// Memory: allocate every free page, heap growth, foreign VA window.
    Mm,
    /// Event delivery soak for `secs=` seconds: loopback upcalls, timer
    /// sleeps (hlt / SCHEDOP_block) and polls (SCHEDOP_poll) woken by events.
    Soak,
}

impl Test {
    /// All scenarios, in the order `help` texts list them.
    pub const ALL: &'static [Test] = &[
        Test::Hello,
        Test::Panic,
        Test::Echo,
        Test::Timer,
        Test::Events,
        Test::EvtchnEcho,
        Test::PageFault,
        Test::InvalidOp,
        Test::DivideError,
        Test::Xenstore,
        Test::Grant,
        Test::Idle,
        Test::DemoFront,
        Test::DemoFrontFault,
        Test::DemoBack,
        Test::VchanServer,
        Test::VchanClient,
        Test::Mm,
        Test::Soak,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Test::Hello => "hello",
            Test::Panic => "panic",
            Test::Echo => "echo",
            Test::Timer => "timer",
            Test::Events => "events",
            Test::EvtchnEcho => "evtchn-echo",
            Test::PageFault => "pagefault",
            Test::InvalidOp => "invalid-op",
            Test::DivideError => "divide-error",
            Test::Xenstore => "xenstore",
            Test::Grant => "grant",
            Test::Idle => "idle",
            Test::DemoFront => "demo-front",
            Test::DemoFrontFault => "demo-front-fault",
            Test::DemoBack => "demo-back",
            Test::VchanServer => "vchan-server",
            Test::VchanClient => "vchan-client",
            Test::Mm => "mm",
            Test::Soak => "soak",
        }
    }

    pub fn from_name(name: &str) -> Option<Test> {
        Test::ALL.iter().copied().find(|t| t.name() == name)
    }
}

/// Parsed options; `Default` is what an empty command line means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub test: Test,
    /// `secs=N` (1..=86400): how long a timed scenario (soak) runs.
    pub secs: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            test: Test::Hello,
            secs: None,
        }
    }
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
    BadValue { option: &'a str, value: &'a str },
    /// The same option twice.
    Duplicate(&'a str),
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::NotUtf8 => write!(f, "not valid UTF-8"),
            CmdlineError::UnknownOption(o) => write!(f, "unknown option '{o}'"),
            CmdlineError::MissingValue(o) => write!(f, "option '{o}' needs a value"),
            CmdlineError::BadValue { option, value } => {
                write!(f, "invalid value '{value}' for option '{option}'")?;
                if *option == "test" {
                    write!(f, " (expected one of:")?;
                    for t in Test::ALL {
                        write!(f, " {}", t.name())?;
                    }
                    write!(f, ")")?;
                }
                Ok(())
            }
            CmdlineError::Duplicate(o) => write!(f, "option '{o}' given twice"),
        }
    }
}

/// Parse raw command line bytes (from start_info / hvm_start_info).
pub fn parse_bytes(raw: &[u8]) -> Result<Options, CmdlineError<'_>> {
    parse(core::str::from_utf8(raw).map_err(|_| CmdlineError::NotUtf8)?)
}

/// Parse a command line. Empty → [`Options::default`].
pub fn parse(s: &str) -> Result<Options, CmdlineError<'_>> {
    let mut opts = Options::default();
    let mut seen_test = false;
    let mut seen_secs = false;
    for word in s.split_ascii_whitespace() {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        match key {
            "test" => {
                if seen_test {
                    return Err(CmdlineError::Duplicate(key));
                }
                seen_test = true;
                let value = value.ok_or(CmdlineError::MissingValue(key))?;
                opts.test =
                    Test::from_name(value).ok_or(CmdlineError::BadValue { option: key, value })?;
            }
            "secs" => {
                if seen_secs {
                    return Err(CmdlineError::Duplicate(key));
                }
                seen_secs = true;
                let value = value.ok_or(CmdlineError::MissingValue(key))?;
                let bad = CmdlineError::BadValue { option: key, value };
                let n: u32 = value.parse().map_err(|_| bad)?;
                if !(1..=86_400).contains(&n) {
                    return Err(bad);
                }
                opts.secs = Some(n);
            }
            _ => return Err(CmdlineError::UnknownOption(key)),
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn empty_is_default() {
        assert_eq!(parse(""), Ok(Options::default()));
        assert_eq!(parse("   \t "), Ok(Options::default()));
    }

    #[test]
    fn test_option() {
        assert_eq!(parse("test=hello").unwrap().test, Test::Hello);
        assert_eq!(parse("  test=panic ").unwrap().test, Test::Panic);
        assert_eq!(parse("test=echo").unwrap().test, Test::Echo);
        assert_eq!(parse("test=evtchn-echo").unwrap().test, Test::EvtchnEcho);
        assert_eq!(parse("test=pagefault").unwrap().test, Test::PageFault);
        assert_eq!(parse("test=xenstore").unwrap().test, Test::Xenstore);
        assert_eq!(parse("test=grant").unwrap().test, Test::Grant);
        assert_eq!(parse("test=idle").unwrap().test, Test::Idle);
        assert_eq!(parse("test=mm").unwrap().test, Test::Mm);
        let o = parse("test=soak secs=90").unwrap();
        assert_eq!((o.test, o.secs), (Test::Soak, Some(90)));
    }

    #[test]
    fn errors() {
        assert_eq!(parse("bogus"), Err(CmdlineError::UnknownOption("bogus")));
        assert_eq!(
            parse("test=hello bogus=1"),
            Err(CmdlineError::UnknownOption("bogus"))
        );
        assert_eq!(parse("test"), Err(CmdlineError::MissingValue("test")));
        assert_eq!(
            parse("test=nope"),
            Err(CmdlineError::BadValue {
                option: "test",
                value: "nope"
            })
        );
        assert_eq!(
            parse("test=hello test=panic"),
            Err(CmdlineError::Duplicate("test"))
        );
        assert_eq!(parse_bytes(b"test=\xff"), Err(CmdlineError::NotUtf8));
        for bad in ["secs=0", "secs=86401", "secs=-1", "secs=1s", "secs="] {
            assert!(
                matches!(
                    parse(bad),
                    Err(CmdlineError::BadValue { option: "secs", .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(parse("secs"), Err(CmdlineError::MissingValue("secs")));
        assert_eq!(parse("secs=1 secs=2"), Err(CmdlineError::Duplicate("secs")));
    }

    #[test]
    fn messages() {
        assert_eq!(
            parse("bogus").unwrap_err().to_string(),
            "unknown option 'bogus'"
        );
        assert_eq!(
            parse("test=x").unwrap_err().to_string(),
            "invalid value 'x' for option 'test' (expected one of: hello panic echo timer events evtchn-echo pagefault invalid-op divide-error xenstore grant idle demo-front demo-front-fault demo-back vchan-server vchan-client mm soak)"
        );
        assert_eq!(
            parse("test").unwrap_err().to_string(),
            "option 'test' needs a value"
        );
    }

    #[test]
    fn names_round_trip() {
        for t in Test::ALL {
            assert_eq!(Test::from_name(t.name()), Some(*t));
        }
        assert_eq!(Test::from_name(""), None);
    }
}
