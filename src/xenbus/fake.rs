//! Host tests only: a small xenstored behind the real
//! [`XenStore`](crate::xenstore::XenStore) client, answering in the
//! client's `notify` (single thread, no clock): an in-memory tree with
//! relative paths under `/local/domain/5`, transactions buffered until
//! commit, commits failing with `EAGAIN` a chosen number of times.

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use std::collections::BTreeMap;

use crate::shared::{SharedMem, TestPages};
use crate::xen_abi::xs_wire;
use crate::xenstore::{encode_message, Decoder, Message, MsgType, XenStore, XsTransport};

/// The fake's domid (relative paths live under `/local/domain/5`).
pub(crate) const DOMID: u16 = 5;

type TxOp = (String, Option<Vec<u8>>);

/// The store and its counters.
#[derive(Default)]
pub(crate) struct FakeStore {
    pub(crate) tree: BTreeMap<String, Vec<u8>>,
    txs: BTreeMap<u32, Vec<TxOp>>,
    next_tx: u32,
    /// Commits still to fail with EAGAIN.
    pub(crate) eagain: u32,
    pub(crate) commits: u32,
    pub(crate) aborted_or_conflicted: u32,
}

impl FakeStore {
    fn abs(p: &str) -> String {
        if p.starts_with('/') {
            p.into()
        } else {
            format!("/local/domain/{DOMID}/{p}")
        }
    }

    /// The value at `path` (relative or absolute), committed.
    pub(crate) fn get(&self, path: &str) -> Option<&[u8]> {
        self.tree.get(&Self::abs(path)).map(|v| v.as_slice())
    }

    /// Sets `path` (relative or absolute).
    pub(crate) fn put(&mut self, path: &str, v: &[u8]) {
        self.tree.insert(Self::abs(path), v.into());
    }

    fn apply(&mut self, path: String, v: Option<Vec<u8>>) {
        match v {
            Some(v) => {
                self.tree.insert(path, v);
            }
            None => self
                .tree
                .retain(|k, _| !(*k == path || k.starts_with(&format!("{path}/")))),
        }
    }

    fn lookup(&self, tx: u32, path: &str) -> Option<Vec<u8>> {
        if let Some(ops) = self.txs.get(&tx) {
            for (p, v) in ops.iter().rev() {
                if p == path {
                    return v.clone();
                }
            }
        }
        self.tree.get(path).cloned()
    }

    fn handle(&mut self, m: &Message) -> Result<Vec<u8>, &'static str> {
        let first = m.payload.split(|&b| b == 0).next().unwrap_or(&[]);
        let first = String::from_utf8_lossy(first).into_owned();
        let path = Self::abs(&first);
        let ok = b"OK\0".to_vec();
        match m.ty {
            MsgType::Read => self.lookup(m.tx_id, &path).ok_or("ENOENT"),
            MsgType::Write => {
                let v = m.payload[first.len() + 1..].to_vec();
                match self.txs.get_mut(&m.tx_id) {
                    Some(ops) => ops.push((path, Some(v))),
                    None => self.apply(path, Some(v)),
                }
                Ok(ok)
            }
            MsgType::Rm => {
                if self.lookup(m.tx_id, &path).is_none() {
                    return Err("ENOENT");
                }
                match self.txs.get_mut(&m.tx_id) {
                    Some(ops) => ops.push((path, None)),
                    None => self.apply(path, None),
                }
                Ok(ok)
            }
            MsgType::Directory => {
                let pre = format!("{path}/");
                let mut out = Vec::new();
                let mut seen = Vec::new();
                for k in self.tree.keys() {
                    if let Some(rest) = k.strip_prefix(&pre) {
                        let name = rest.split('/').next().unwrap_or("");
                        if !seen.iter().any(|s: &String| s == name) {
                            seen.push(name.into());
                            out.extend_from_slice(name.as_bytes());
                            out.push(0);
                        }
                    }
                }
                if seen.is_empty() && !self.tree.contains_key(&path) {
                    return Err("ENOENT");
                }
                Ok(out)
            }
            MsgType::TransactionStart => {
                self.next_tx += 1;
                self.txs.insert(self.next_tx, Vec::new());
                Ok(format!("{}\0", self.next_tx).into())
            }
            MsgType::TransactionEnd => {
                let ops = self.txs.remove(&m.tx_id).ok_or("ENOENT")?;
                if first != "T" {
                    self.aborted_or_conflicted += 1;
                    return Ok(ok);
                }
                if self.eagain > 0 {
                    self.eagain -= 1;
                    self.aborted_or_conflicted += 1;
                    return Err("EAGAIN");
                }
                for (p, v) in ops {
                    self.apply(p, v);
                }
                self.commits += 1;
                Ok(ok)
            }
            _ => Err("ENOSYS"),
        }
    }
}

/// The transport: `notify` runs the fake over what the client wrote.
pub(crate) struct FakeTransport<'a> {
    pub(crate) store: FakeStore,
    mem: SharedMem<'a>,
    dec: Decoder,
    out: Vec<u8>,
    now: u64,
}

impl FakeTransport<'_> {
    fn run(&mut self) {
        let m = &self.mem;
        let prod = m.load_u32(xs_wire::REQ_PROD);
        let cons = m.load_u32(xs_wire::REQ_CONS);
        let n = prod.wrapping_sub(cons) as usize;
        assert!(n <= xs_wire::XENSTORE_RING_SIZE);
        let mut input = Vec::with_capacity(n);
        for i in 0..n {
            let idx = cons.wrapping_add(i as u32) as usize & (xs_wire::XENSTORE_RING_SIZE - 1);
            input.push(m.read::<u8>(xs_wire::REQ + idx));
        }
        m.store_u32(xs_wire::REQ_CONS, prod);
        let mut off = 0;
        while off < input.len() {
            let (used, msg) = self.dec.push(&input[off..]).unwrap();
            off += used;
            if let Some(msg) = msg {
                let bytes = match self.store.handle(&msg) {
                    Ok(p) => encode_message(msg.ty, msg.req_id, msg.tx_id, &p),
                    Err(e) => encode_message(
                        MsgType::Error,
                        msg.req_id,
                        msg.tx_id,
                        format!("{e}\0").as_bytes(),
                    ),
                };
                self.out.extend(bytes.unwrap());
            }
        }
        let prod = m.load_u32(xs_wire::RSP_PROD);
        let cons = m.load_u32(xs_wire::RSP_CONS);
        let space = xs_wire::XENSTORE_RING_SIZE - prod.wrapping_sub(cons) as usize;
        let k = space.min(self.out.len());
        for (i, &b) in self.out[..k].iter().enumerate() {
            let idx = prod.wrapping_add(i as u32) as usize & (xs_wire::XENSTORE_RING_SIZE - 1);
            m.write::<u8>(xs_wire::RSP + idx, b);
        }
        m.store_u32(xs_wire::RSP_PROD, prod.wrapping_add(k as u32));
        self.out.drain(..k);
    }
}

impl XsTransport for FakeTransport<'_> {
    fn notify(&mut self) {
        self.run();
    }
    fn now_ns(&self) -> u64 {
        self.now
    }
    fn timeout_ns(&self) -> u64 {
        1_000_000_000
    }
    fn wait(&mut self, _deadline_ns: u64) {
        self.now += 1_000;
        self.run();
    }
}

/// Runs `f` with a real client over the fake; commits fail with `EAGAIN`
/// `eagain` times.
pub(crate) fn xenstore_with(
    mut store: FakeStore,
    eagain: u32,
    f: impl for<'p> FnOnce(&mut XenStore<'p, FakeTransport<'p>>),
) {
    store.eagain = eagain;
    let page = TestPages::new(1);
    let t = FakeTransport {
        store,
        mem: page.mem(),
        dec: Decoder::new(),
        out: Vec::new(),
        now: 0,
    };
    let mut xs = XenStore::new(page.mem(), t).unwrap();
    f(&mut xs);
}
