//! The netfront scenario (`test=net`): the first `device/vif` against
//! Linux netback, bridged to Dom0's `xenbr0` (10.0.0.1/24) by
//! tests/nested/net.rs. The guest is 10.0.0.2/24 (smoltcp): it answers
//! ARP and ICMP echo (Dom0 pings it) and runs a TCP echo server on port 7
//! (Dom0 pushes random bytes through it and compares sha256), until Dom0
//! sets `data/xf-net-done` (or 180 s pass).
//!
//! Console lines (matched by tests/nested/net.rs):
//! ```text
//! net: mac <m>, backend features <list>
//! net: up 10.0.0.2/24, tcp echo on port 7
//! net: connection <n>: echoed <bytes> bytes
//! net: <rx> frames in, <tx> frames out, <e> rx errors, <n> notifications, <f> tx-full
//! net: closed
//! ```

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use xenfront::net::{self, Config, Net};
use xenfront::println;
use xenfront::smoltcp::iface::{Config as IfConfig, Interface, SocketSet};
use xenfront::smoltcp::socket::tcp;
use xenfront::smoltcp::wire::{EthernetAddress, IpCidr, Ipv4Address};
use xenfront::time;
use xenfront::xenstore;

use crate::options::Options;
use crate::scenario::Verdict;

/// Set by Dom0 when it is done with the guest.
const DONE_KEY: &str = "data/xf-net-done";
/// The echo port.
const ECHO_PORT: u16 = 7;

/// `test=net`: grants, deferred grants and ports back at their baseline
/// afterwards ([`crate::blk::with_resources`]).
pub fn net_test(_: &Options) -> Verdict {
    crate::blk::with_resources(run)
}

fn run() -> Result<(), String> {
    let mut dev = Net::open(None, Config::default()).map_err(|e| format!("open: {e}"))?;
    let mac = dev.mac();
    let f = dev.features().unwrap_or_default();
    println!(
        "net: mac {}, backend features sg {} gso-tcpv4 {} split-event-channels {} max-queues {}",
        mac.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<alloc::vec::Vec<_>>()
            .join(":"),
        u8::from(f.sg),
        u8::from(f.gso_tcpv4),
        u8::from(f.split_event_channels),
        f.max_queues
    );
    let mut cfg = IfConfig::new(EthernetAddress(mac).into());
    cfg.random_seed = time::now_ns();
    let mut iface = Interface::new(cfg, &mut dev, net::now());
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(Ipv4Address::new(10, 0, 0, 2).into(), 24));
    });
    let mut sockets = SocketSet::new(vec![]);
    let sock = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; 65536]),
        tcp::SocketBuffer::new(vec![0u8; 65536]),
    );
    let h = sockets.add(sock);
    sockets
        .get_mut::<tcp::Socket>(h)
        .listen(ECHO_PORT)
        .map_err(|e| format!("listen: {e:?}"))?;
    println!("net: up 10.0.0.2/24, tcp echo on port {ECHO_PORT}");
    let deadline = time::now_ns() + 180_000_000_000;
    let mut buf = vec![0u8; 16384];
    let (mut conn, mut echoed, mut was_open) = (0u32, 0u64, false);
    let mut next_check = 0;
    loop {
        let now = time::now_ns();
        if now >= deadline {
            return Err("Dom0 did not finish within 180 s".into());
        }
        if now >= next_check {
            if xenstore::read(DONE_KEY).is_ok() {
                break;
            }
            next_check = now + 200_000_000;
        }
        iface.poll(net::now(), &mut dev, &mut sockets);
        if let Some(e) = dev.error() {
            return Err(format!("device down: {e}"));
        }
        let s = sockets.get_mut::<tcp::Socket>(h);
        if s.is_active() {
            was_open = true;
        }
        // Echo what fits in the send buffer; the rest waits in the receive
        // buffer (TCP's window then slows the sender).
        while s.can_recv() && s.can_send() {
            let room = buf.len().min(s.send_capacity() - s.send_queue());
            if room == 0 {
                break;
            }
            let n = s
                .recv_slice(&mut buf[..room])
                .map_err(|e| format!("recv: {e:?}"))?;
            if n == 0 {
                break;
            }
            let sent = s
                .send_slice(&buf[..n])
                .map_err(|e| format!("send: {e:?}"))?;
            if sent != n {
                return Err(format!("send took {sent} of {n} bytes"));
            }
            echoed += n as u64;
        }
        // The client closed and everything is echoed: close our side.
        if s.state() == tcp::State::CloseWait && s.send_queue() == 0 && !s.can_recv() {
            s.close();
        }
        if was_open && !s.is_open() {
            println!("net: connection {conn}: echoed {echoed} bytes");
            conn += 1;
            echoed = 0;
            was_open = false;
            s.listen(ECHO_PORT).map_err(|e| format!("listen: {e:?}"))?;
        }
        let wake = iface
            .poll_delay(net::now(), &sockets)
            .map_or(50_000_000, |d| d.total_micros() * 1000)
            .min(50_000_000);
        dev.wait(time::now_ns() + wake);
    }
    let st = dev.stats();
    println!(
        "net: {} frames in, {} frames out, {} rx errors, {} notifications, {} tx-full",
        st.rx_frames, st.tx_frames, st.rx_errors, st.notifies, st.tx_full
    );
    drop(sockets);
    dev.close().map_err(|e| format!("close: {e}"))?;
    println!("net: closed");
    Ok(())
}
