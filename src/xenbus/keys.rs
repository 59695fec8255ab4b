//! Writing a frontend's connection keys (`ring-ref`…, `event-channel`,
//! `protocol`, `state`) in one XenStore transaction, so the backend sees
//! all of them or none, redone when xenstored answers `EAGAIN` (another
//! writer touched what we read or wrote: docs/misc/xenstore.txt), a
//! bounded number of times (Linux blkfront `talk_to_blkback`: `again:` on
//! `-EAGAIN` from `xenbus_transaction_end`).
//!
//! The store is reached through [`TxStore`], three calls, so host tests
//! script conflicts; [`XenStore`] implements it.

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::{XenbusError, XenbusState};
use crate::xenstore::{self, TxId, XenStore, XsError, XsTransport};

/// Attempts [`write_keys`] makes by default before
/// [`XenbusError::TooManyRetries`] (as many as
/// [`XenStore::transaction`]).
pub const MAX_TX_ATTEMPTS: u32 = crate::xenstore::MAX_TRANSACTION_RETRIES as u32;

/// The transaction calls the key writer needs.
pub trait TxStore {
    /// `TRANSACTION_START`.
    fn tx_start(&mut self) -> Result<TxId, xenstore::Error>;
    /// `WRITE` in transaction `tx`.
    fn tx_write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), xenstore::Error>;
    /// `RM` in transaction `tx`.
    fn tx_rm(&mut self, tx: TxId, path: &str) -> Result<(), xenstore::Error>;
    /// `TRANSACTION_END`, commit or abort; a commit fails with
    /// `Xs(EAGAIN)` when the transaction conflicted.
    fn tx_end(&mut self, tx: TxId, commit: bool) -> Result<(), xenstore::Error>;
}

impl<T: XsTransport> TxStore for XenStore<'_, T> {
    fn tx_start(&mut self) -> Result<TxId, xenstore::Error> {
        self.transaction_start()
    }
    fn tx_write(&mut self, tx: TxId, path: &str, value: &[u8]) -> Result<(), xenstore::Error> {
        self.write(tx, path, value)
    }
    fn tx_rm(&mut self, tx: TxId, path: &str) -> Result<(), xenstore::Error> {
        self.rm(tx, path)
    }
    fn tx_end(&mut self, tx: TxId, commit: bool) -> Result<(), xenstore::Error> {
        self.transaction_end(tx, commit)
    }
}

/// Keys to write under one directory, relative names (`ring-ref`,
/// `queue-0/event-channel`), in order; and keys to remove first (stale
/// ones of an earlier connection, e.g. `ring-page-order` when
/// reconnecting with one page).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    writes: Vec<(String, Vec<u8>)>,
    removes: Vec<String>,
}

impl Keys {
    /// No keys.
    pub fn new() -> Keys {
        Keys::default()
    }

    /// Sets `key` to `value` (replacing an earlier value of the same key).
    pub fn set(&mut self, key: &str, value: &[u8]) -> &mut Keys {
        match self.writes.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.into(),
            None => self.writes.push((key.into(), value.into())),
        }
        self.removes.retain(|k| k != key);
        self
    }

    /// Sets `key` to the decimal `n` (`ring-ref`, `event-channel`).
    pub fn set_u64(&mut self, key: &str, n: u64) -> &mut Keys {
        self.set(key, format!("{n}").as_bytes())
    }

    /// Sets `state` (usually the last key: the backend acts on it).
    pub fn set_state(&mut self, s: XenbusState) -> &mut Keys {
        self.set("state", &s.value())
    }

    /// Removes `key` (and what is below it) if it exists.
    pub fn remove(&mut self, key: &str) -> &mut Keys {
        self.writes.retain(|(k, _)| k != key);
        if !self.removes.iter().any(|k| k == key) {
            self.removes.push(key.into());
        }
        self
    }

    /// The writes, in order.
    pub fn writes(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.writes.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// The removals, in order.
    pub fn removes(&self) -> impl Iterator<Item = &str> {
        self.removes.iter().map(|k| k.as_str())
    }

    fn check(&self) -> Result<(), XenbusError> {
        for k in self.writes.iter().map(|(k, _)| k).chain(&self.removes) {
            let ok = !k.is_empty()
                && k.split('/').all(|c| {
                    !c.is_empty()
                        && c != "."
                        && c != ".."
                        && c.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            if !ok {
                return Err(XenbusError::BadKey(k.clone()));
            }
        }
        Ok(())
    }
}

/// One attempt: removals, writes, commit.
fn attempt<S: TxStore>(s: &mut S, tx: TxId, dir: &str, keys: &Keys) -> Result<(), xenstore::Error> {
    for k in keys.removes() {
        match s.tx_rm(tx, &format!("{dir}/{k}")) {
            Ok(()) | Err(xenstore::Error::Xs(XsError::ENOENT)) => {}
            Err(e) => return Err(e),
        }
    }
    for (k, v) in keys.writes() {
        s.tx_write(tx, &format!("{dir}/{k}"), v)?;
    }
    Ok(())
}

/// Writes `keys` under `dir` in one transaction, at most `max_attempts`
/// times: a conflict (`EAGAIN`, from the commit or from a request inside
/// the transaction) redoes it; any other error aborts the transaction and
/// is returned. Returns the attempts used.
pub fn write_keys<S: TxStore>(
    store: &mut S,
    dir: &str,
    keys: &Keys,
    max_attempts: u32,
) -> Result<u32, XenbusError> {
    keys.check()?;
    let eagain = xenstore::Error::Xs(XsError::EAGAIN);
    for n in 1..=max_attempts {
        let tx = match store.tx_start() {
            Ok(tx) => tx,
            Err(e) if e == eagain => continue,
            Err(e) => return Err(e.into()),
        };
        match attempt(store, tx, dir, keys) {
            Ok(()) => match store.tx_end(tx, true) {
                Ok(()) => return Ok(n),
                Err(e) if e == eagain => continue,
                Err(e) => return Err(e.into()),
            },
            Err(e) => {
                // Best effort: the request's error is the one that matters.
                let _ = store.tx_end(tx, false);
                if e != eagain {
                    return Err(e.into());
                }
            }
        }
    }
    Err(XenbusError::TooManyRetries {
        dir: dir.into(),
        attempts: max_attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xenbus::fake::{xenstore_with, FakeStore};
    use alloc::string::ToString;
    use alloc::vec;
    use std::collections::BTreeMap;

    /// A scripted store: an in-memory tree, transactions buffered until
    /// commit, `EAGAIN` injected at chosen points.
    #[derive(Default)]
    struct Script {
        tree: BTreeMap<String, Vec<u8>>,
        pending: Vec<(String, Option<Vec<u8>>)>,
        open: Option<u32>,
        next: u32,
        /// Commits that fail with EAGAIN before one succeeds.
        commit_eagain: u32,
        /// Writes that fail with EAGAIN.
        write_eagain: u32,
        /// Starts that fail with EAGAIN.
        start_eagain: u32,
        /// A write to this path fails with EACCES.
        deny: Option<String>,
        log: Vec<String>,
    }

    impl TxStore for Script {
        fn tx_start(&mut self) -> Result<TxId, xenstore::Error> {
            self.log.push("start".into());
            assert!(self.open.is_none(), "nested transaction");
            if self.start_eagain > 0 {
                self.start_eagain -= 1;
                return Err(xenstore::Error::Xs(XsError::EAGAIN));
            }
            self.next += 1;
            self.open = Some(self.next);
            Ok(TxId(self.next))
        }
        fn tx_write(&mut self, tx: TxId, path: &str, v: &[u8]) -> Result<(), xenstore::Error> {
            assert_eq!(Some(tx.0), self.open);
            self.log.push(format!("w {path}"));
            if self.write_eagain > 0 {
                self.write_eagain -= 1;
                return Err(xenstore::Error::Xs(XsError::EAGAIN));
            }
            if self.deny.as_deref() == Some(path) {
                return Err(xenstore::Error::Xs(XsError::EACCES));
            }
            self.pending.push((path.into(), Some(v.into())));
            Ok(())
        }
        fn tx_rm(&mut self, tx: TxId, path: &str) -> Result<(), xenstore::Error> {
            assert_eq!(Some(tx.0), self.open);
            self.log.push(format!("rm {path}"));
            if !self.tree.contains_key(path) {
                return Err(xenstore::Error::Xs(XsError::ENOENT));
            }
            self.pending.push((path.into(), None));
            Ok(())
        }
        fn tx_end(&mut self, tx: TxId, commit: bool) -> Result<(), xenstore::Error> {
            assert_eq!(Some(tx.0), self.open.take());
            self.log.push(format!("end {commit}"));
            let ops = core::mem::take(&mut self.pending);
            if !commit {
                return Ok(());
            }
            if self.commit_eagain > 0 {
                self.commit_eagain -= 1;
                return Err(xenstore::Error::Xs(XsError::EAGAIN));
            }
            for (p, v) in ops {
                match v {
                    Some(v) => self.tree.insert(p, v),
                    None => self.tree.remove(&p),
                };
            }
            Ok(())
        }
    }

    fn blk_keys() -> Keys {
        let mut k = Keys::new();
        k.set_u64("ring-ref", 8)
            .set_u64("event-channel", 17)
            .set("protocol", b"x86_64-abi")
            .remove("ring-page-order")
            .set_state(XenbusState::Initialised);
        k
    }

    fn tree(s: &Script) -> Vec<(String, String)> {
        s.tree
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    const DIR: &str = "device/vbd/51712";

    #[test]
    fn keys_builder() {
        let mut k = blk_keys();
        k.set_u64("ring-ref", 9);
        assert_eq!(
            k.writes().collect::<Vec<_>>(),
            vec![
                ("ring-ref", &b"9"[..]),
                ("event-channel", b"17"),
                ("protocol", b"x86_64-abi"),
                ("state", b"3"),
            ]
        );
        assert_eq!(k.removes().collect::<Vec<_>>(), vec!["ring-page-order"]);
        k.set("ring-page-order", b"2");
        assert_eq!(k.removes().count(), 0);
        k.remove("protocol").remove("protocol");
        assert_eq!(k.writes().count(), 4);
        assert_eq!(k.removes().collect::<Vec<_>>(), vec!["protocol"]);
    }

    #[test]
    fn one_transaction() {
        let mut s = Script::default();
        s.tree
            .insert(format!("{DIR}/ring-page-order"), b"4".to_vec());
        assert_eq!(write_keys(&mut s, DIR, &blk_keys(), MAX_TX_ATTEMPTS), Ok(1));
        assert_eq!(
            tree(&s),
            vec![
                (format!("{DIR}/event-channel"), "17".to_string()),
                (format!("{DIR}/protocol"), "x86_64-abi".to_string()),
                (format!("{DIR}/ring-ref"), "8".to_string()),
                (format!("{DIR}/state"), "3".to_string()),
            ]
        );
        assert_eq!(
            s.log,
            vec![
                "start".to_string(),
                format!("rm {DIR}/ring-page-order"),
                format!("w {DIR}/ring-ref"),
                format!("w {DIR}/event-channel"),
                format!("w {DIR}/protocol"),
                format!("w {DIR}/state"),
                "end true".to_string(),
            ]
        );
        // Removing a key that is not there is fine.
        let mut s = Script::default();
        assert_eq!(write_keys(&mut s, DIR, &blk_keys(), 1), Ok(1));
    }

    #[test]
    fn eagain_is_retried_k_times() {
        for k in 0..MAX_TX_ATTEMPTS {
            let mut s = Script {
                commit_eagain: k,
                ..Default::default()
            };
            assert_eq!(
                write_keys(&mut s, DIR, &blk_keys(), MAX_TX_ATTEMPTS),
                Ok(k + 1)
            );
            assert_eq!(s.tree.len(), 4, "committed once, whole");
            assert_eq!(s.log.iter().filter(|l| *l == "start").count() as u32, k + 1);
        }
        // EAGAIN from requests inside the transaction, and from the start.
        let mut s = Script {
            write_eagain: 2,
            start_eagain: 3,
            commit_eagain: 1,
            ..Default::default()
        };
        assert_eq!(write_keys(&mut s, DIR, &blk_keys(), 10), Ok(7));
        assert_eq!(s.tree.len(), 4);
        // Aborted attempts were ended with "F".
        assert_eq!(s.log.iter().filter(|l| *l == "end false").count(), 2);
    }

    #[test]
    fn bounded_then_named() {
        let mut s = Script {
            commit_eagain: u32::MAX,
            ..Default::default()
        };
        assert_eq!(
            write_keys(&mut s, DIR, &blk_keys(), 5),
            Err(XenbusError::TooManyRetries {
                dir: DIR.into(),
                attempts: 5
            })
        );
        assert!(s.tree.is_empty());
        assert_eq!(s.log.iter().filter(|l| *l == "start").count(), 5);
        let mut s = Script {
            start_eagain: u32::MAX,
            ..Default::default()
        };
        assert!(matches!(
            write_keys(&mut s, DIR, &blk_keys(), 3),
            Err(XenbusError::TooManyRetries { attempts: 3, .. })
        ));
    }

    #[test]
    fn other_errors_abort() {
        let mut s = Script {
            deny: Some(format!("{DIR}/protocol")),
            ..Default::default()
        };
        assert_eq!(
            write_keys(&mut s, DIR, &blk_keys(), MAX_TX_ATTEMPTS),
            Err(XenbusError::Store(xenstore::Error::Xs(XsError::EACCES)))
        );
        assert!(s.tree.is_empty(), "nothing committed");
        assert_eq!(s.log.last().map(String::as_str), Some("end false"));
        assert_eq!(s.log.iter().filter(|l| *l == "start").count(), 1);
    }

    #[test]
    fn bad_key_names() {
        for bad in ["", "/abs", "a/../b", "a//b", "a/", ".", "x y", "a\0b", "é"] {
            let mut k = Keys::new();
            k.set(bad, b"1");
            let mut s = Script::default();
            assert_eq!(
                write_keys(&mut s, DIR, &k, 3),
                Err(XenbusError::BadKey(bad.into()))
            );
            assert!(s.log.is_empty(), "rejected before any request");
        }
        let mut k = Keys::new();
        k.set("queue-0/ring-ref0", b"8")
            .set("multi-queue-num-queues", b"2");
        assert_eq!(write_keys(&mut Script::default(), DIR, &k, 1), Ok(1));
    }

    /// The same writer over the real client, against a small xenstored
    /// that answers in the client's `notify` and fails commits with EAGAIN.
    #[test]
    fn over_the_real_client() {
        xenstore_with(FakeStore::default(), 3, |xs| {
            assert_eq!(write_keys(xs, DIR, &blk_keys(), MAX_TX_ATTEMPTS), Ok(4));
            let st = &xs.transport().store;
            assert_eq!(st.get(&format!("{DIR}/state")), Some(&b"3"[..]));
            assert_eq!(st.get(&format!("{DIR}/protocol")), Some(&b"x86_64-abi"[..]));
            assert_eq!(st.commits, 1);
            assert_eq!(st.aborted_or_conflicted, 3);
        });
        xenstore_with(FakeStore::default(), u32::MAX, |xs| {
            assert!(matches!(
                write_keys(xs, DIR, &blk_keys(), 4),
                Err(XenbusError::TooManyRetries { attempts: 4, .. })
            ));
            assert_eq!(xs.transport().store.get(&format!("{DIR}/state")), None);
        });
    }
}
