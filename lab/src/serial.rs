//! The serial-line protocol, Dom0 → host (docs/lab.md, "Serial framing"): parsing one
//! line into a [`Msg`] and reassembling shipped files ([`FileRx`]). Pure: no I/O, no
//! clock, so it is tested on recorded and made-up serial text.

use std::time::Duration;

use crate::{util, Shutdown};

/// What marks a lab line; the host finds it anywhere in a line (Xen output may land in
/// front of it).
pub const PREFIX: &str = "XFLAB:";

/// One lab line (`XFLAB:<tag> ...`), decoded. Scenario numbers are Dom0's `<n>`, the
/// scenario's position in the suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg<'a> {
    /// `stage <word> <uptime>`: Dom0 boot progress (`init`, `modules`, `toolstack`).
    Stage(&'a str),
    /// `ready ...`: `xl info` answers.
    Ready,
    /// `abort <stage: reason>`: Dom0 could not bring up the toolstack.
    Abort(&'a str),
    /// `fault <n or -> <text>`: a lab fault of scenario n, or of Dom0's boot (`None`).
    Fault {
        /// The scenario, if the second word is a number.
        n: Option<usize>,
        /// The fault's text.
        text: &'a str,
    },
    /// `begin <n> <domain>`: scenario n starts.
    Begin(usize),
    /// `con <n> <line>`: a guest console line (trailing `\r` removed).
    Con(usize, &'a str),
    /// `file <n> <kind> <size> <truncated> [name]`: a file transfer starts.
    File(FileHeader),
    /// `b64 <base64>`: one line of the file being transferred.
    B64(&'a str),
    /// `endfile <n> <sha256> [gz]`: the file is complete.
    EndFile {
        /// sha256 (hex) of the (capped, uncompressed) content; empty: not checked.
        sum: &'a str,
        /// `gz` if the content was gzip-compressed before base64.
        enc: &'a str,
    },
    /// `done`: all scenarios ran.
    Done,
    /// A result line of scenario n (`domid`, `shutdown`, `end`, ...).
    Result(usize, Event<'a>),
    /// A lab line the host does not use (unknown tag, or malformed).
    Ignored,
}

/// A result line of one scenario (`XFLAB:<tag> <n> <rest>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// `createlog`: a line of a failed `xl create`'s output.
    CreateLog(&'a str),
    /// `retry`: `xl create` crashed and was retried (why).
    Retry(&'a str),
    /// `fail`: a failure reason.
    Fail(&'a str),
    /// `labfail`: a lab fault found by the runner.
    LabFail(&'a str),
    /// `note`: an informational line.
    Note(&'a str),
    /// `domid`: the guest's domain id (`None` if not a number).
    Domid(Option<u32>),
    /// `t <key> <ms>`: a Dom0-measured time.
    Time(Timing, Option<Duration>),
    /// `shutdown <code|timeout|gone>`.
    Shutdown(Shutdown),
    /// `script <status>`: the Dom0 script's exit status (`None` if not a number).
    Script(Option<i32>),
    /// `script killed`: still running after its wait bound.
    ScriptKilled,
    /// `end`: all results of the scenario are sent.
    End,
    /// A tag the host does not know.
    Unknown,
}

/// The Dom0-measured times of `XFLAB:t <n> <key> <ms>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// `create_ms`: duration of `xl create -p`.
    Create,
    /// `create_first_ms`: `xl create` start → first console byte.
    CreateFirst,
    /// `unpause_first_ms`: `xl unpause` → first console byte.
    UnpauseFirst,
    /// `unpause_gone_ms`: `xl unpause` → shut down.
    UnpauseGone,
}

/// The announcement of a shipped file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// Scenario (`usize::MAX` if the word is not a number).
    pub n: usize,
    /// `console`, `xllog`, `scriptout`, `out`, `xlcreate`, `vcpuctx`.
    pub kind: String,
    /// File name (kind `out`), else empty.
    pub name: String,
    /// Cut at the cap on the Dom0 side.
    pub truncated: bool,
}

/// Decode one serial line; `None` if it is not a lab line (Xen's and Dom0's own output).
pub fn parse(line: &str) -> Option<Msg<'_>> {
    let pos = line.find(PREFIX)?;
    let msg = &line[pos + PREFIX.len()..];
    let (tag, rest) = msg.split_once(' ').unwrap_or((msg, ""));
    let (n_word, tail) = rest.split_once(' ').unwrap_or((rest, ""));
    let n: Option<usize> = n_word.parse().ok();
    Some(match (tag, n) {
        ("stage", _) => Msg::Stage(n_word),
        ("ready", _) => Msg::Ready,
        ("abort", _) => Msg::Abort(rest),
        ("fault", None) => Msg::Fault {
            n: None,
            text: rest.trim_start_matches("- "),
        },
        ("fault", Some(n)) => Msg::Fault {
            n: Some(n),
            text: tail,
        },
        ("begin", Some(n)) => Msg::Begin(n),
        ("con", Some(n)) => Msg::Con(n, tail.trim_end_matches('\r')),
        ("file", _) => file_header(rest).map_or(Msg::Ignored, Msg::File),
        ("b64", _) => Msg::B64(rest.trim()),
        ("endfile", _) => {
            let t = tail.trim();
            let (sum, enc) = t.split_once(' ').unwrap_or((t, ""));
            Msg::EndFile { sum, enc }
        }
        ("done", None) => Msg::Done,
        (_, None) => Msg::Ignored,
        (tag, Some(n)) => Msg::Result(n, event(tag, tail)),
    })
}

/// `<n> <kind> <size> <truncated 0/1> [name]`; `None` with fewer than four words.
fn file_header(rest: &str) -> Option<FileHeader> {
    let f: Vec<&str> = rest.splitn(5, ' ').collect();
    (f.len() >= 4).then(|| FileHeader {
        n: f[0].parse().unwrap_or(usize::MAX),
        kind: f[1].to_string(),
        name: f.get(4).unwrap_or(&"").to_string(),
        truncated: f[3] == "1",
    })
}

fn event<'a>(tag: &str, tail: &'a str) -> Event<'a> {
    match tag {
        "createlog" => Event::CreateLog(tail),
        "retry" => Event::Retry(tail),
        "fail" => Event::Fail(tail),
        "labfail" => Event::LabFail(tail),
        "note" => Event::Note(tail),
        "domid" => Event::Domid(tail.trim().parse().ok()),
        "t" => {
            let (k, v) = tail.split_once(' ').unwrap_or(("", ""));
            let key = match k {
                "create_ms" => Timing::Create,
                "create_first_ms" => Timing::CreateFirst,
                "unpause_first_ms" => Timing::UnpauseFirst,
                "unpause_gone_ms" => Timing::UnpauseGone,
                _ => return Event::Unknown,
            };
            Event::Time(key, v.trim().parse::<u64>().ok().map(Duration::from_millis))
        }
        "shutdown" => Event::Shutdown(match tail.trim() {
            "timeout" => Shutdown::Timeout,
            "gone" => Shutdown::Gone,
            c => c.parse().map(Shutdown::from_code).unwrap_or(Shutdown::Gone),
        }),
        "script" => match tail.trim() {
            "killed" => Event::ScriptKilled,
            s => Event::Script(s.parse().ok()),
        },
        "end" => Event::End,
        _ => Event::Unknown,
    }
}

/// A file being received: its header and the base64 text so far.
#[derive(Debug)]
pub struct FileRx {
    /// What `XFLAB:file` announced.
    pub header: FileHeader,
    b64: String,
}

/// A completely received file.
#[derive(Debug)]
pub struct Received {
    /// What `XFLAB:file` announced.
    pub header: FileHeader,
    /// The content (decoded, gunzipped; what could be recovered if damaged).
    pub data: Vec<u8>,
    /// The announced sha256 did not match `data`.
    pub corrupt: bool,
}

impl FileRx {
    /// Start receiving the file `header` announced.
    pub fn new(header: FileHeader) -> FileRx {
        FileRx {
            header,
            b64: String::new(),
        }
    }

    /// Add one `XFLAB:b64` line.
    pub fn push(&mut self, b64: &str) {
        self.b64.push_str(b64);
    }

    /// Decode the file at its `XFLAB:endfile <n> <sum> <enc>` and check its sha256.
    pub fn finish(self, sum: &str, enc: &str) -> Received {
        let mut data = util::base64_decode(&self.b64);
        if enc == "gz" {
            data = util::gunzip_partial(&data).0;
        }
        let corrupt = !sum.is_empty() && util::sha256_hex(&data) != sum;
        Received {
            header: self.header,
            data,
            corrupt,
        }
    }
}

impl Received {
    /// `kind` or `kind:name`, as in failure messages and `Outcome::truncated`.
    pub fn label(&self) -> String {
        if self.header.name.is_empty() {
            self.header.kind.clone()
        } else {
            format!("{}:{}", self.header.kind, self.header.name)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    fn gz_b64_lines(data: &[u8]) -> Vec<String> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        let z = e.finish().unwrap();
        // Standard base64, 76 characters a line like busybox `base64`.
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in z.chunks(3) {
            let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
            let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= c.len() {
                    s.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s.as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn plain_lines_are_not_lab_lines() {
        assert_eq!(parse("(XEN) Xen version 4.17.5"), None);
        assert_eq!(parse("[    0.000000] Linux version 6.1.0"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("XFLAB"), None);
    }

    #[test]
    fn boot_lines() {
        assert_eq!(parse("XFLAB:stage init 3.21"), Some(Msg::Stage("init")));
        assert_eq!(
            parse("XFLAB:stage toolstack 5.0"),
            Some(Msg::Stage("toolstack"))
        );
        assert_eq!(parse("XFLAB:ready 12.3 xl info ok"), Some(Msg::Ready));
        assert_eq!(parse("XFLAB:ready"), Some(Msg::Ready));
        assert_eq!(
            parse("XFLAB:abort toolstack: xenstored did not start"),
            Some(Msg::Abort("toolstack: xenstored did not start"))
        );
        assert_eq!(parse("XFLAB:done"), Some(Msg::Done));
        // Xen output that landed in front of the prefix does no harm.
        assert_eq!(parse("(XEN) d0v1 XFLAB:done"), Some(Msg::Done));
    }

    #[test]
    fn faults() {
        assert_eq!(
            parse("XFLAB:fault - dom0: traps: xl[77] general protection"),
            Some(Msg::Fault {
                n: None,
                text: "dom0: traps: xl[77] general protection"
            })
        );
        assert_eq!(
            parse("XFLAB:fault 3 xl log: libxl: error: x"),
            Some(Msg::Fault {
                n: Some(3),
                text: "xl log: libxl: error: x"
            })
        );
    }

    #[test]
    fn scenario_lines() {
        assert_eq!(parse("XFLAB:begin 2 xf2-pv-hello"), Some(Msg::Begin(2)));
        assert_eq!(
            parse("XFLAB:con 2 Test result: SUCCESS\r"),
            Some(Msg::Con(2, "Test result: SUCCESS"))
        );
        // A console line keeps its inner spaces; an empty one stays empty.
        assert_eq!(parse("XFLAB:con 0   a  b"), Some(Msg::Con(0, "  a  b")));
        assert_eq!(parse("XFLAB:con 0 "), Some(Msg::Con(0, "")));
        let r = |l| match parse(l) {
            Some(Msg::Result(n, e)) => (n, e),
            m => panic!("{l}: {m:?}"),
        };
        assert_eq!(r("XFLAB:domid 2 7"), (2, Event::Domid(Some(7))));
        assert_eq!(r("XFLAB:domid 2 x"), (2, Event::Domid(None)));
        assert_eq!(
            r("XFLAB:t 2 create_ms 430"),
            (
                2,
                Event::Time(Timing::Create, Some(Duration::from_millis(430)))
            )
        );
        assert_eq!(
            r("XFLAB:t 2 unpause_gone_ms 4700"),
            (
                2,
                Event::Time(Timing::UnpauseGone, Some(Duration::from_millis(4700)))
            )
        );
        assert_eq!(
            r("XFLAB:t 2 create_first_ms x").1,
            Event::Time(Timing::CreateFirst, None)
        );
        assert_eq!(r("XFLAB:t 2 other_ms 5").1, Event::Unknown);
        assert_eq!(
            r("XFLAB:shutdown 2 0").1,
            Event::Shutdown(Shutdown::Poweroff)
        );
        assert_eq!(r("XFLAB:shutdown 2 3").1, Event::Shutdown(Shutdown::Crash));
        assert_eq!(
            r("XFLAB:shutdown 2 9").1,
            Event::Shutdown(Shutdown::Other(9))
        );
        assert_eq!(
            r("XFLAB:shutdown 2 timeout").1,
            Event::Shutdown(Shutdown::Timeout)
        );
        assert_eq!(
            r("XFLAB:shutdown 2 gone").1,
            Event::Shutdown(Shutdown::Gone)
        );
        assert_eq!(r("XFLAB:shutdown 2 ???").1, Event::Shutdown(Shutdown::Gone));
        assert_eq!(r("XFLAB:script 2 0").1, Event::Script(Some(0)));
        assert_eq!(r("XFLAB:script 2 killed").1, Event::ScriptKilled);
        assert_eq!(
            r("XFLAB:retry 2 xl create crashed (rc=134): x").1,
            Event::Retry("xl create crashed (rc=134): x")
        );
        assert_eq!(
            r("XFLAB:fail 2 xl create failed").1,
            Event::Fail("xl create failed")
        );
        assert_eq!(
            r("XFLAB:labfail 2 crashed twice").1,
            Event::LabFail("crashed twice")
        );
        assert_eq!(r("XFLAB:note 2 a note").1, Event::Note("a note"));
        assert_eq!(
            r("XFLAB:createlog 2 libxl: x").1,
            Event::CreateLog("libxl: x")
        );
        assert_eq!(r("XFLAB:end 2"), (2, Event::End));
        assert_eq!(r("XFLAB:whatever 2 x").1, Event::Unknown);
    }

    #[test]
    fn corrupt_and_truncated_lines_are_ignored() {
        // No scenario number where one is needed.
        assert_eq!(parse("XFLAB:begin"), Some(Msg::Ignored));
        assert_eq!(parse("XFLAB:begin x xf0-a"), Some(Msg::Ignored));
        assert_eq!(parse("XFLAB:con"), Some(Msg::Ignored));
        assert_eq!(parse("XFLAB:end"), Some(Msg::Ignored));
        assert_eq!(parse("XFLAB:shutdown -1 0"), Some(Msg::Ignored));
        assert_eq!(parse("XFLAB:"), Some(Msg::Ignored));
        assert_eq!(parse("XFLAB:nonsense"), Some(Msg::Ignored));
        // `done` with a number is not `done`.
        assert!(matches!(
            parse("XFLAB:done 1"),
            Some(Msg::Result(1, Event::Unknown))
        ));
        // A file header cut short.
        assert_eq!(parse("XFLAB:file 0 console 12"), Some(Msg::Ignored));
    }

    #[test]
    fn file_headers() {
        let h = |l| match parse(l) {
            Some(Msg::File(h)) => h,
            m => panic!("{l}: {m:?}"),
        };
        assert_eq!(
            h("XFLAB:file 1 out 300000 1 big file.txt"),
            FileHeader {
                n: 1,
                kind: "out".into(),
                name: "big file.txt".into(),
                truncated: true
            }
        );
        let c = h("XFLAB:file 0 console 12 0 ");
        assert_eq!(
            (c.n, c.kind.as_str(), c.name.as_str(), c.truncated),
            (0, "console", "", false)
        );
        assert_eq!(h("XFLAB:file x console 12 0").n, usize::MAX);
        assert_eq!(
            parse("XFLAB:endfile 0 abc123 gz"),
            Some(Msg::EndFile {
                sum: "abc123",
                enc: "gz"
            })
        );
        assert_eq!(
            parse("XFLAB:endfile 0 abc123"),
            Some(Msg::EndFile {
                sum: "abc123",
                enc: ""
            })
        );
        assert_eq!(
            parse("XFLAB:endfile 0"),
            Some(Msg::EndFile { sum: "", enc: "" })
        );
        assert_eq!(parse("XFLAB:b64 aGVsbG8= \r"), Some(Msg::B64("aGVsbG8=")));
    }

    /// Feed a transcript through `parse` + `FileRx` the way the collector does.
    fn receive(lines: &[String]) -> Vec<Received> {
        let mut rx: Option<FileRx> = None;
        let mut got = Vec::new();
        for l in lines {
            match parse(l) {
                Some(Msg::File(h)) => rx = Some(FileRx::new(h)),
                Some(Msg::B64(b)) => {
                    if let Some(f) = rx.as_mut() {
                        f.push(b)
                    }
                }
                Some(Msg::EndFile { sum, enc }) => {
                    if let Some(f) = rx.take() {
                        got.push(f.finish(sum, enc))
                    }
                }
                _ => {}
            }
        }
        got
    }

    /// The serial lines Dom0's `sendfile` produces for `data`.
    pub(crate) fn transfer(n: usize, kind: &str, name: &str, data: &[u8]) -> Vec<String> {
        let mut v = vec![format!("XFLAB:file {n} {kind} {} 0 {name}", data.len())];
        v.extend(
            gz_b64_lines(data)
                .into_iter()
                .map(|l| format!("XFLAB:b64 {l}")),
        );
        v.push(format!("XFLAB:endfile {n} {} gz", util::sha256_hex(data)));
        v
    }

    #[test]
    fn file_round_trip() {
        let text: Vec<u8> = (0..3000)
            .flat_map(|i| format!("line {i}\r\n").into_bytes())
            .collect();
        let mut lines = transfer(0, "console", "", &text);
        // Xen's own messages between lines do no harm.
        lines.insert(3, "(XEN) d1v0 some message".into());
        let got = receive(&lines);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].data, text);
        assert!(!got[0].corrupt);
        assert_eq!(got[0].label(), "console");
        let out = receive(&transfer(4, "out", "x.txt", b"payload\n"));
        assert_eq!(out[0].label(), "out:x.txt");
        assert_eq!(out[0].header.n, 4);
        // An empty file.
        let e = receive(&transfer(1, "scriptout", "", b""));
        assert!(e[0].data.is_empty() && !e[0].corrupt);
    }

    #[test]
    fn damaged_transfers_are_flagged() {
        let text: Vec<u8> = (0..3000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let good = transfer(0, "console", "", &text);
        // A b64 line lost.
        let mut lost = good.clone();
        lost.remove(2);
        let r = receive(&lost);
        assert!(r[0].corrupt && r[0].data != text);
        // A corrupted character.
        let mut bad = good.clone();
        let mut b: Vec<char> = bad[2].chars().collect();
        b[30] = if b[30] == 'Q' { 'R' } else { 'Q' };
        bad[2] = b.into_iter().collect();
        assert!(receive(&bad)[0].corrupt);
        // Cut off before endfile: nothing is received.
        assert!(receive(&good[..good.len() - 1]).is_empty());
        // A wrong announced sum.
        let mut sum = good.clone();
        *sum.last_mut().unwrap() = "XFLAB:endfile 0 0000 gz".into();
        let r = receive(&sum);
        assert!(r[0].corrupt && r[0].data == text);
        // No sum announced: not checked.
        let mut nosum = good.clone();
        *nosum.last_mut().unwrap() = "XFLAB:endfile 0".into();
        let r = receive(&nosum);
        assert!(!r[0].corrupt);
        // Not gzip-encoded (enc missing): the raw base64 payload.
        let raw = vec![
            "XFLAB:file 0 out 5 0 f".to_string(),
            "XFLAB:b64 aGVsbG8=".into(),
            format!("XFLAB:endfile 0 {}", util::sha256_hex(b"hello")),
        ];
        let r = receive(&raw);
        assert_eq!(r[0].data, b"hello");
        assert!(!r[0].corrupt);
    }
}
