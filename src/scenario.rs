//! In-guest scenarios (`test=<name>`) and their verdicts, XTF style: each
//! run ends with exactly one `Test result: <VERDICT>` line.

use core::fmt;

pub use crate::cmdline::Test;

/// Outcome of a scenario, ordered by severity (XTF report.c): the worst
/// verdict seen wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Success,
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

/// Run one scenario.
pub fn run(test: Test, env: &mut dyn Env) -> Verdict {
    match test {
        Test::Hello => Verdict::Success,
        Test::Panic => panic!("{}", PANIC_MESSAGE),
        Test::Echo => echo(env),
        // Need the running kernel (events, timers, traps): run by
        // kernel_main through `kscenario`; reaching here is a bug.
        Test::Timer
        | Test::Events
        | Test::EvtchnEcho
        | Test::PageFault
        | Test::InvalidOp
        | Test::DivideError
        | Test::Soak => Verdict::Error,
        // Need memory, grants and XenStore: run by kernel_main through
        // `services`; reaching here is a bug.
        Test::Xenstore | Test::Grant | Test::Idle | Test::Mm => Verdict::Error,
        // Need grants, events and XenStore: run by kernel_main through
        // `channels`; reaching here is a bug.
        Test::DemoFront
        | Test::DemoFrontFault
        | Test::DemoBack
        | Test::VchanServer
        | Test::VchanClient => Verdict::Error,
    }
}

/// `echo: ready`, then one input line comes back as `echo: "<line>"`.
fn echo(env: &mut dyn Env) -> Verdict {
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
        assert_eq!(run(Test::Hello, &mut fake(None)), Verdict::Success);
    }

    #[test]
    #[should_panic(expected = "deliberate panic")]
    fn panic_panics() {
        run(Test::Panic, &mut fake(None));
    }

    #[test]
    fn echo_echoes() {
        let mut env = fake(Some(b"ping \"x\""));
        assert_eq!(run(Test::Echo, &mut env), Verdict::Success);
        assert_eq!(env.said, ["echo: ready", "echo: \"ping \\\"x\\\"\""]);
        let mut env = fake(None);
        assert_eq!(run(Test::Echo, &mut env), Verdict::Failure);
        assert_eq!(env.said[1], "echo: no input (timeout)");
    }
}
