//! Host-side test of the Dom0 script helpers (lab/dom0/lib.sh) under the lab's own
//! busybox: the waits succeed as soon as their condition holds, time out with their
//! message and status, and everything works under `set -u`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Env {
    busybox: PathBuf,
    dir: PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let art = lab::image::prepare().expect("lab image (for busybox)");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lib-sh-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        // A fake xenstore-read: keys are files under $XS.
        let xs = dir.join("bin/xenstore-read");
        std::fs::write(
            &xs,
            "#!/bin/sh\ncat \"$XS/$(echo \"$1\" | tr / _)\" 2>/dev/null\n",
        )
        .unwrap();
        Command::new("chmod").arg("+x").arg(&xs).status().unwrap();
        Env {
            busybox: art.busybox,
            dir,
        }
    }

    /// Run `script` with lib.sh sourced the way runner.sh does it.
    fn run(&self, script: &str) -> Output {
        let s = self.dir.join("script");
        std::fs::write(&s, format!("set -u\n{script}")).unwrap();
        let path = format!(
            "{}:{}",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(&self.busybox)
            .args(["sh", "-c", ". \"$XF_LIB\" && . \"$0\""])
            .arg(&s)
            .current_dir(&self.dir)
            .env("XF_LIB", lab::util::lab_dir().join("dom0/lib.sh"))
            .env("CONSOLE_LOG", self.dir.join("console.log"))
            .env("XS", &self.dir)
            .env("PATH", path)
            .output()
            .unwrap()
    }
}

fn out(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn waits_succeed_when_their_condition_holds() {
    let e = Env::new("ok");
    let o = e.run(
        r#"
( usleep 300000; printf 'booting\r\nready: port 17\r\n' >>"$CONSOLE_LOG"
  echo v1 >"$XS/_local_domain_3_data_k"; echo holding >f.out ) &
wait_console '^ready: port [0-9]+' 5
echo "line=$(console_line '^ready: ')|"
wait_file f.out '^hold' 5 && echo file-ok
echo "key=$(wait_xenstore /local/domain/3/data/k 5)"
xf_poll 2 test -e f.out && echo poll-ok
h=$(rand_hex 8); echo "hex=${#h}"
case $h in *[!0-9a-f]*) echo bad-hex ;; esac
exit 0
"#,
    );
    let (code, stdout, stderr) = out(&o);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout, "line=ready: port 17|\nfile-ok\nkey=v1\npoll-ok\nhex=16\n",
        "{stderr}"
    );
}

#[test]
fn console_and_xenstore_timeouts_exit_3() {
    let e = Env::new("exit");
    // No console log at all: no grep noise, a clear message, status 3, nothing after.
    let (code, stdout, stderr) = out(&e.run("wait_console 'never' 1\necho after\n"));
    assert_eq!((code, stdout.as_str()), (3, ""), "{stderr}");
    assert_eq!(stderr, "timeout waiting for never\n");
    let (code, stdout, stderr) = out(&e.run("wait_xenstore /no/key 1\necho after\n"));
    assert_eq!((code, stdout.as_str()), (3, ""), "{stderr}");
    assert_eq!(stderr, "timeout waiting for XenStore key /no/key\n");
}

#[test]
fn file_socket_and_poll_timeouts_return_1() {
    let e = Env::new("ret");
    let (code, stdout, stderr) = out(&e.run(
        r#"
: >f.out
wait_file f.out 'x' 1; echo "file $?"
wait_file missing.out 'x' 1; echo "missing $?"
wait_socket ./no.sock 1; echo "socket $?"
xf_poll 1 false; echo "poll $?"
echo "line=$(console_line x)|"
"#,
    ));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "file 1\nmissing 1\nsocket 1\npoll 1\nline=|\n");
    assert_eq!(
        stderr,
        "timeout waiting for x in f.out\ntimeout waiting for x in missing.out\n\
         timeout waiting for socket ./no.sock\n"
    );
}
