//! User data: the guest command line (`extra=` in the xl config), as the
//! kernel reads it from start_info / the PVH start info: arbitrary bytes
//! through `cmdline::{as_str, kernel_options, app_words, key_value,
//! parse_u32}`, the application's `key=value` lookups (`arg`/`arg_num`
//! logic over the same words; the real ones read a boot-time global), and
//! the test kernel's word parser and `decimal_key` (XenStore values Dom0
//! publishes for a scenario; tests/kernel/src/options.rs, included here).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xenfront::cmdline::{
    app_words, as_str, kernel_options, key_value, parse_u32, CmdlineError, KERNEL_PREFIX,
};
use xenfront_fuzz::Input;

#[path = "../../tests/kernel/src/options.rs"]
#[allow(dead_code)]
mod options;

const KNOWN: &[&str] = &["hello", "panic", "soak", "vchan-server"];

/// `xenfront::arg` over `s` instead of the recorded command line.
fn arg<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    app_words(s).find_map(|w| match key_value(w) {
        (k, Some(v)) if k == key => Some(v),
        _ => None,
    })
}

fn check_words(s: &str) {
    let all: Vec<&str> = s.split_ascii_whitespace().collect();
    let app: Vec<&str> = app_words(s).collect();
    let kernel: Vec<&str> = all
        .iter()
        .copied()
        .filter(|w| w.starts_with(KERNEL_PREFIX))
        .collect();
    assert_eq!(app.len() + kernel.len(), all.len());
    for w in &app {
        assert!(!w.is_empty() && !w.starts_with(KERNEL_PREFIX));
        assert!(!w.bytes().any(|b| b.is_ascii_whitespace()));
        let (k, v) = key_value(w);
        assert!(!k.contains('='));
        match v {
            Some(v) => assert_eq!(format!("{k}={v}"), *w),
            None => assert_eq!(k, *w),
        }
    }
    match kernel_options(s) {
        Ok(o) => {
            let given = kernel
                .iter()
                .filter(|w| key_value(w).0 == "xf.xs-timeout")
                .count();
            assert_eq!(given, kernel.len(), "only known options accepted");
            assert!(given <= 1);
            assert_eq!(o.xs_timeout_ms.is_some(), given == 1);
            if let Some(ms) = o.xs_timeout_ms {
                assert!((100..=600_000).contains(&ms));
            }
        }
        Err(e) => {
            assert!(!kernel.is_empty(), "error without a kernel word: {e:?}");
            let text = e.to_string();
            match e {
                CmdlineError::UnknownOption(k) | CmdlineError::MissingValue(k) => {
                    assert!(s.contains(k) && text.contains(k))
                }
                CmdlineError::Duplicate(k) => assert!(s.matches(k).count() >= 2),
                CmdlineError::BadValue { option, value, .. } => {
                    assert!(s.contains(&format!("{option}={value}")))
                }
                CmdlineError::NotUtf8 => panic!("NotUtf8 from a str"),
            }
        }
    }
    // The applications' lookups: the first `key=` word wins.
    for w in app.iter().take(4) {
        let (k, v) = key_value(w);
        if let Some(v) = v {
            let got = arg(s, k).expect("a word with this key exists");
            let first = app
                .iter()
                .find_map(|w| match key_value(w) {
                    (k2, Some(v2)) if k2 == k => Some(v2),
                    _ => None,
                })
                .unwrap();
            assert_eq!(got, first);
            let _ = v.parse::<u64>();
            let _ = got.parse::<i32>();
            let _ = got.parse::<f64>();
        }
    }
    match options::parse(app.iter().copied(), KNOWN) {
        Ok(o) => {
            assert!(KNOWN.contains(&o.test));
            if let Some(n) = o.secs {
                assert!((1..=86_400).contains(&n));
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let lo = inp.u32();
    let hi = inp.u32();
    let raw = inp.rest();
    match as_str(raw) {
        Ok(s) => {
            check_words(s);
            // Any value against any range.
            match parse_u32("opt", s, lo..=hi, "range") {
                Ok(n) => assert!(n >= lo && n <= hi && s.parse::<u32>() == Ok(n)),
                Err(e) => assert!(matches!(e, CmdlineError::BadValue { .. })),
            }
        }
        Err(e) => {
            assert_eq!(e, CmdlineError::NotUtf8);
            assert!(std::str::from_utf8(raw).is_err());
            // What a kernel would still see of it: the valid prefix.
            let ok = std::str::from_utf8(raw).unwrap_err().valid_up_to();
            check_words(std::str::from_utf8(&raw[..ok]).unwrap());
        }
    }
    match options::decimal_key("data/x", raw) {
        Ok(None) => assert!(raw.is_empty()),
        Ok(Some(n)) => {
            assert!(!raw.is_empty() && raw.iter().all(u8::is_ascii_digit));
            assert_eq!(std::str::from_utf8(raw).unwrap().parse::<u32>(), Ok(n));
        }
        Err(msg) => {
            assert!(!raw.is_empty());
            assert!(msg.starts_with("data/x: bad value "));
        }
    }
});
