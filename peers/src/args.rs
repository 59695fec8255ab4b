//! A small command-line parser: positionals plus `--flag` / `--opt VALUE`
//! (also `--opt=VALUE`). Numbers accept decimal or `0x` hex.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct Args {
    pub positional: Vec<String>,
    opts: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    /// `with_value`: options that take a value; `switches`: boolean flags.
    /// Anything else starting with `--` is an error.
    pub fn parse<I: IntoIterator<Item = String>>(
        argv: I,
        with_value: &[&str],
        switches: &[&str],
    ) -> Result<Args, String> {
        let mut a = Args::default();
        let mut it = argv.into_iter();
        while let Some(arg) = it.next() {
            let Some(name) = arg.strip_prefix("--") else {
                a.positional.push(arg);
                continue;
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (name.to_string(), None),
            };
            if with_value.contains(&name.as_str()) {
                let v = match inline {
                    Some(v) => v,
                    None => it.next().ok_or(format!("--{name} needs a value"))?,
                };
                a.opts.insert(name, v);
            } else if switches.contains(&name.as_str()) {
                if inline.is_some() {
                    return Err(format!("--{name} takes no value"));
                }
                a.flags.push(name);
            } else {
                return Err(format!("unknown option --{name}"));
            }
        }
        Ok(a)
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    pub fn opt(&self, name: &str) -> Option<&str> {
        self.opts.get(name).map(String::as_str)
    }

    /// A numeric option, `Ok(None)` if absent.
    pub fn num(&self, name: &str) -> Result<Option<u64>, String> {
        self.opt(name)
            .map(|v| parse_num(v).map_err(|e| format!("--{name}: {e}")))
            .transpose()
    }

    pub fn num_or(&self, name: &str, default: u64) -> Result<u64, String> {
        Ok(self.num(name)?.unwrap_or(default))
    }

    /// Exactly `n` positionals named `names` (for the error message).
    pub fn expect_positional(&self, names: &[&str]) -> Result<(), String> {
        if self.positional.len() != names.len() {
            return Err(format!(
                "expected {} argument(s) <{}>, got {}",
                names.len(),
                names.join("> <"),
                self.positional.len()
            ));
        }
        Ok(())
    }

    pub fn pos_num(&self, i: usize, what: &str) -> Result<u64, String> {
        parse_num(&self.positional[i]).map_err(|e| format!("<{what}>: {e}"))
    }
}

/// Decimal, or hex with a `0x` prefix.
pub fn parse_num(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("not a number: {s:?}"))
}

/// A byte given in hex, with or without `0x`: `a5`, `0xA5`.
pub fn parse_hex_u8(s: &str) -> Result<u8, String> {
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u8::from_str_radix(h, 16).map_err(|_| format!("not a hex byte (00..ff): {s:?}"))
}

/// A domid: 0..=0x7fef (DOMID_FIRST_RESERVED is 0x7ff0).
pub fn parse_domid(s: &str) -> Result<u16, String> {
    let v = parse_num(s)?;
    if v >= 0x7ff0 {
        return Err(format!("not a domain id: {s}"));
    }
    Ok(v as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> Result<Args, String> {
        Args::parse(
            v.iter().map(|s| s.to_string()),
            &["hold-ms", "expect-pattern"],
            &["rw"],
        )
    }

    #[test]
    fn mixed_positionals_and_options() {
        let a = p(&["3", "--hold-ms", "500", "8", "--rw", "--expect-pattern=a5"]).unwrap();
        assert_eq!(a.positional, vec!["3", "8"]);
        assert_eq!(a.num("hold-ms").unwrap(), Some(500));
        assert_eq!(a.opt("expect-pattern"), Some("a5"));
        assert!(a.flag("rw"));
        assert_eq!(a.num_or("missing", 7).unwrap(), 7);
        assert!(a.expect_positional(&["domid", "ref"]).is_ok());
        assert!(a.expect_positional(&["domid"]).is_err());
    }

    #[test]
    fn errors() {
        assert!(p(&["--bogus"]).is_err());
        assert!(p(&["--hold-ms"]).is_err());
        assert!(p(&["--rw=1"]).is_err());
        assert!(p(&["--hold-ms", "x"]).unwrap().num("hold-ms").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_num("0x10"), Ok(16));
        assert_eq!(parse_num("10"), Ok(10));
        assert!(parse_num("-1").is_err());
        assert_eq!(parse_hex_u8("a5"), Ok(0xa5));
        assert_eq!(parse_hex_u8("0xFF"), Ok(0xff));
        assert!(parse_hex_u8("100").is_err());
        assert_eq!(parse_domid("5"), Ok(5));
        assert!(parse_domid("0x7ff0").is_err());
    }
}
