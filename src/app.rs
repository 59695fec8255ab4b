//! The application entry: what an appliance crate sees of the boot.
//!
//! An application is a `no_std`, `no_main` binary crate that depends on
//! xenfront and names its entry once:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//!
//! fn app() -> Result<(), xenfront::Error> {
//!     xenfront::println!("hello from {}", xenfront::boot_kind());
//!     Ok(())
//! }
//!
//! xenfront::main!(app);
//! ```
//!
//! The kernel boots (PV or PVH), brings up memory, event channels, time,
//! the grant table, XenStore (with the `control/shutdown` watch) and the
//! console, then calls `app`. `Ok(())` powers the domain off; `Err(e)`
//! prints `error: <e>` and crashes it (`on_crash=` in the xl config); a
//! panic prints its message and location and crashes it. The linker script
//! and the boot code come with the library (docs/app.md).

extern crate alloc;

use alloc::string::{String, ToString};
use core::fmt;

/// The signature of an application's entry.
pub type AppMain = fn() -> Result<(), Error>;

/// Declares the application's entry function (`fn() -> Result<(),
/// xenfront::Error>`). Use it once, at the crate root of the application.
#[macro_export]
macro_rules! main {
    ($entry:path) => {
        /// The application entry the xenfront kernel calls after boot.
        #[unsafe(no_mangle)]
        pub fn __xenfront_app_main() -> ::core::result::Result<(), $crate::Error> {
            let entry: $crate::app::AppMain = $entry;
            entry()
        }
    };
}

/// An application's error: a message, printed as `error: <message>` before
/// the domain crashes. Any error type implementing [`core::error::Error`]
/// converts with `?`; [`Error::msg`] makes one from text.
pub struct Error {
    msg: String,
}

impl Error {
    /// An error with this message.
    pub fn msg(msg: impl fmt::Display) -> Error {
        Error {
            msg: msg.to_string(),
        }
    }

    /// The same error with `context` in front: `<context>: <message>`.
    pub fn context(self, context: impl fmt::Display) -> Error {
        Error {
            msg: alloc::format!("{context}: {}", self.msg),
        }
    }
}

impl<E: core::error::Error> From<E> for Error {
    fn from(e: E) -> Error {
        Error::msg(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?})", self.msg)
    }
}

/// Returns early with an [`Error`] made from a format string.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Error::msg(::core::format_args!($($arg)*)))
    };
}

/// The application's command-line words: every word of `extra=` that is
/// not a kernel option (`xf.*`), in order.
pub fn args() -> impl Iterator<Item = &'static str> + Clone {
    crate::cmdline::app_words(cmdline())
}

/// The value of the application's `key=value` word, if given (the first
/// one if repeated).
pub fn arg(key: &str) -> Option<&'static str> {
    args().find_map(|w| match crate::cmdline::key_value(w) {
        (k, Some(v)) if k == key => Some(v),
        _ => None,
    })
}

/// The number given as the application's `key=<n>` word, or `default`
/// when the word is absent; a value that is not a number is an [`Error`]
/// naming the word and the value.
pub fn arg_num<T: core::str::FromStr>(key: &str, default: T) -> Result<T, Error> {
    match arg(key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| Error::msg(alloc::format!("{key}={v:?}: not a number"))),
    }
}

static CMDLINE: spin::Once<&'static str> = spin::Once::new();

/// The whole command line (kernel options included); empty before boot
/// recorded it.
pub fn cmdline() -> &'static str {
    CMDLINE.get().copied().unwrap_or("")
}

/// Records the command line for [`args`] (called once by the kernel).
#[cfg_attr(not(target_os = "none"), allow(dead_code))]
pub(crate) fn set_cmdline(s: &'static str) {
    CMDLINE.call_once(|| s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Oops;
    impl fmt::Display for Oops {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("oops")
        }
    }
    impl core::error::Error for Oops {}

    fn fails() -> Result<(), Error> {
        Err(Oops)?;
        Ok(())
    }

    fn bails(n: u32) -> Result<(), Error> {
        if n > 2 {
            bail!("n is {n}");
        }
        Ok(())
    }

    #[test]
    fn errors_convert_and_print() {
        assert_eq!(fails().unwrap_err().to_string(), "oops");
        assert_eq!(
            fails().unwrap_err().context("reading").to_string(),
            "reading: oops"
        );
        assert_eq!(bails(3).unwrap_err().to_string(), "n is 3");
        assert!(bails(1).is_ok());
    }
}
