//! The xenfront test kernel: an application of the library whose
//! `test=<name>` word picks one in-guest scenario from [`TESTS`]. XTF
//! style, the run prints `test: <name>`, the scenario's own lines, then
//! exactly one `Test result: <VERDICT>` line, and powers off; the lab
//! judges the run by that line (no line = CRASH). Product images never
//! contain any of this.
//!
//! Adding a scenario: write `fn(&Options) -> Verdict` in a module and add
//! one [`Test`] line to [`TESTS`].
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

mod options;
mod scenario;
#[cfg(any(target_os = "none", test))]
mod sha256;

#[cfg(target_os = "none")]
mod blk;
#[cfg(target_os = "none")]
mod channels;
#[cfg(target_os = "none")]
mod fault;
#[cfg(target_os = "none")]
mod hostile;
#[cfg(target_os = "none")]
mod kscenario;
#[cfg(target_os = "none")]
mod net;
#[cfg(target_os = "none")]
mod services;

#[cfg(target_os = "none")]
mod guest {
    use crate::options::{self, Options};
    use crate::scenario::{self, Env, Verdict};
    use crate::{blk, channels, hostile, kscenario, net, services};
    use xenfront::console::ConsoleError;
    use xenfront::hypercall::ShutdownReason;
    use xenfront::{control, println};

    /// One scenario: its `test=` name and its body.
    pub struct Test {
        /// The `test=` value.
        pub name: &'static str,
        /// Runs the scenario; the verdict is printed by [`run`].
        pub run: fn(&Options) -> Verdict,
    }

    /// Every scenario, in the order `test=` help lists them.
    pub const TESTS: [Test; 30] = [
        Test {
            name: "hello",
            run: |_| scenario::hello(&mut ConsoleEnv),
        },
        Test {
            name: "panic",
            run: |_| scenario::panic(&mut ConsoleEnv),
        },
        Test {
            name: "echo",
            run: |_| scenario::echo(&mut ConsoleEnv),
        },
        Test {
            name: "timer",
            run: kscenario::timer_test,
        },
        Test {
            name: "events",
            run: kscenario::events_test,
        },
        Test {
            name: "evtchn-echo",
            run: kscenario::evtchn_echo_test,
        },
        Test {
            name: "pagefault",
            run: kscenario::pagefault_test,
        },
        Test {
            name: "invalid-op",
            run: kscenario::invalid_op_test,
        },
        Test {
            name: "divide-error",
            run: kscenario::divide_error_test,
        },
        Test {
            name: "xenstore",
            run: services::xenstore,
        },
        Test {
            name: "grant",
            run: services::grant,
        },
        Test {
            name: "idle",
            run: services::idle_test,
        },
        Test {
            name: "demo-front",
            run: channels::demo_front_test,
        },
        Test {
            name: "demo-front-fault",
            run: channels::demo_front_fault_test,
        },
        Test {
            name: "demo-back",
            run: channels::demo_back_test,
        },
        Test {
            name: "vchan-server",
            run: channels::vchan_server_test,
        },
        Test {
            name: "vchan-client",
            run: channels::vchan_client_test,
        },
        Test {
            name: "mm",
            run: services::mm,
        },
        Test {
            name: "soak",
            run: kscenario::soak_test,
        },
        Test {
            name: "evtchn-limit",
            run: kscenario::evtchn_limit_test,
        },
        Test {
            name: "demo-cycles",
            run: channels::demo_cycles_test,
        },
        Test {
            name: "hostile-storm",
            run: hostile::storm_test,
        },
        Test {
            name: "hostile-map",
            run: hostile::map_test,
        },
        Test {
            name: "hostile-xs",
            run: hostile::xs_test,
        },
        Test {
            name: "blk",
            run: blk::blk_test,
        },
        Test {
            name: "blk-multi",
            run: blk::multi_test,
        },
        Test {
            name: "blk-detach",
            run: blk::detach_test,
        },
        Test {
            name: "blk-features",
            run: blk::features_test,
        },
        Test {
            name: "blk-hostile",
            run: blk::hostile_test,
        },
        Test {
            name: "net",
            run: net::net_test,
        },
    ];

    const fn names<const N: usize>(tests: &[Test; N]) -> [&'static str; N] {
        let mut out = [""; N];
        let mut i = 0;
        while i < N {
            out[i] = tests[i].name;
            i += 1;
        }
        out
    }

    /// The names `test=` accepts.
    static NAMES: [&str; TESTS.len()] = names(&TESTS);

    /// The entry: pick the scenario, run it, report its verdict.
    pub fn run() -> Result<(), xenfront::Error> {
        let opts = match options::parse(xenfront::args(), &NAMES) {
            Ok(o) => o,
            Err(e) => {
                println!("error: cmdline: {e}");
                println!("Test result: {}", Verdict::Error);
                control::exit(ShutdownReason::Crash);
            }
        };
        println!("test: {}", opts.test);
        let test = TESTS
            .iter()
            .find(|t| t.name == opts.test)
            .ok_or_else(|| xenfront::Error::msg("parsed test name not in the registry"))?;
        let verdict = (test.run)(&opts);
        println!("Test result: {verdict}");
        Ok(())
    }

    /// The scenario environment of the console-only scenarios.
    struct ConsoleEnv;

    impl Env for ConsoleEnv {
        fn say(&mut self, args: core::fmt::Arguments<'_>) {
            println!("{args}");
        }
        fn read_line(&mut self, buf: &mut [u8], timeout_ns: u64) -> Result<usize, &'static str> {
            xenfront::console::read_line(buf, timeout_ns).map_err(|e| match e {
                ConsoleError::Timeout => "timeout",
                ConsoleError::BadIndex { .. } => "bad console ring index",
            })
        }
    }
}

#[cfg(target_os = "none")]
xenfront::main!(guest::run);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "the xenfront test kernel is a Xen guest: build it with --target x86_64-unknown-none"
    );
}
