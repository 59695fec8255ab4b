//! Verdicts, XTF style: each run ends with exactly one
//! `Test result: <VERDICT>` line; and the scenarios that need nothing but
//! the console (`hello`, `panic`, `echo`), host-tested through [`Env`].

use core::fmt;

/// Outcome of a scenario, ordered by severity (XTF report.c): the worst
/// verdict seen wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// The scenario did what it must.
    Success,
    /// The scenario could not run here (XTF's verdict; none skips yet).
    #[allow(dead_code)]
    Skip,
    /// A bug in the test or its configuration (e.g. a bad command line).
    Error,
    /// A bug in the code under test.
    Failure,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Success => "SUCCESS",
            Verdict::Skip => "SKIP",
            Verdict::Error => "ERROR",
            Verdict::Failure => "FAILURE",
        }
    }

    /// The more severe of two verdicts.
    #[cfg(test)]
    pub fn worst(self, other: Verdict) -> Verdict {
        self.max(other)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a scenario may do besides computing: console I/O.
pub trait Env {
    /// Print a line.
    fn say(&mut self, args: fmt::Arguments<'_>);
    /// Read one line of console input within `timeout_ns`; `Err` says why not.
    fn read_line(&mut self, buf: &mut [u8], timeout_ns: u64) -> Result<usize, &'static str>;
}

/// How long `test=echo` waits for its input line.
pub const ECHO_TIMEOUT_NS: u64 = 30_000_000_000;

/// Message of the deliberate panic of `test=panic` (checked by the lab).
pub const PANIC_MESSAGE: &str = "test=panic: deliberate panic";

/// `test=hello`: the banner was printed; nothing else to do.
pub fn hello(_: &mut dyn Env) -> Verdict {
    Verdict::Success
}

/// `test=panic`: panics on purpose (checks the panic path and the crash
/// reason).
pub fn panic(_: &mut dyn Env) -> Verdict {
    panic!("{}", PANIC_MESSAGE)
}

/// `echo: ready`, then one input line comes back as `echo: "<line>"`.
pub fn echo(env: &mut dyn Env) -> Verdict {
    env.say(format_args!("echo: ready"));
    let mut buf = [0u8; 80];
    match env.read_line(&mut buf, ECHO_TIMEOUT_NS) {
        Ok(n) => {
            let line = core::str::from_utf8(&buf[..n]).unwrap_or("<not utf-8>");
            env.say(format_args!("echo: {line:?}"));
            Verdict::Success
        }
        Err(e) => {
            env.say(format_args!("echo: no input ({e})"));
            Verdict::Failure
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_order() {
        assert_eq!(Verdict::Success.worst(Verdict::Skip), Verdict::Skip);
        assert_eq!(Verdict::Failure.worst(Verdict::Error), Verdict::Failure);
        assert_eq!(Verdict::Error.to_string(), "ERROR");
    }

    use std::string::{String, ToString};
    use std::vec::Vec;

    struct Fake {
        input: Option<&'static [u8]>,
        said: Vec<String>,
    }

    impl Env for Fake {
        fn say(&mut self, args: fmt::Arguments<'_>) {
            self.said.push(args.to_string());
        }
        fn read_line(&mut self, buf: &mut [u8], _t: u64) -> Result<usize, &'static str> {
            let line = self.input.ok_or("timeout")?;
            buf[..line.len()].copy_from_slice(line);
            Ok(line.len())
        }
    }

    fn fake(input: Option<&'static [u8]>) -> Fake {
        Fake {
            input,
            said: Vec::new(),
        }
    }

    #[test]
    fn hello_succeeds() {
        assert_eq!(hello(&mut fake(None)), Verdict::Success);
    }

    #[test]
    #[should_panic(expected = "deliberate panic")]
    fn panic_panics() {
        panic(&mut fake(None));
    }

    #[test]
    fn echo_echoes() {
        let mut env = fake(Some(b"ping \"x\""));
        assert_eq!(echo(&mut env), Verdict::Success);
        assert_eq!(env.said, ["echo: ready", "echo: \"ping \\\"x\\\"\""]);
        let mut env = fake(None);
        assert_eq!(echo(&mut env), Verdict::Failure);
        assert_eq!(env.said[1], "echo: no input (timeout)");
    }
}
