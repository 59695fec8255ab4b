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

/// Message of the deliberate panic of `test=panic` (checked by the lab).
pub const PANIC_MESSAGE: &str = "test=panic: deliberate panic";

/// Run one scenario.
pub fn run(test: Test) -> Verdict {
    match test {
        Test::Hello => Verdict::Success,
        Test::Panic => panic!("{}", PANIC_MESSAGE),
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

    #[test]
    fn hello_succeeds() {
        assert_eq!(run(Test::Hello), Verdict::Success);
    }

    #[test]
    #[should_panic(expected = "deliberate panic")]
    fn panic_panics() {
        run(Test::Panic);
    }
}
