//! tcp-echo: a TCP echo server on the first network interface (xl
//! `vif = [...]`, stock netback), with smoltcp. It also answers ARP and
//! ping. Connections are served one after another until `xl shutdown`.
//!
//! Words (`extra=`): `ip=<a.b.c.d/len>` (default `10.0.0.2/24`),
//! `port=<n>` (default 7).
//!
//! ```text
//! tcp-echo: mac 00:16:3e:58:00:07, 10.0.0.2/24, port 7
//! tcp-echo: connection 0 from 10.0.0.1:40312: echoed 1048576 bytes
//! ```
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec;

use xenfront::control::{self, ShutdownRequest};
use xenfront::net::{self, Config, Net};
use xenfront::smoltcp::iface::{Config as IfConfig, Interface, SocketSet};
use xenfront::smoltcp::socket::tcp;
use xenfront::smoltcp::wire::{EthernetAddress, IpCidr};
use xenfront::time;
use xenfront::{println, Error};

/// Longest sleep between two polls (a shutdown request is looked for).
const SLICE_NS: u64 = 50_000_000;

fn serve() -> Result<(), Error> {
    let ip = xenfront::arg("ip").unwrap_or("10.0.0.2/24");
    let cidr: IpCidr = ip
        .parse()
        .map_err(|_| Error::msg(alloc::format!("ip={ip:?}: not an address/prefix")))?;
    let port = u16::try_from(xenfront::arg_num::<u32>("port", 7)?)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| Error::msg("port=: not a TCP port (1-65535)"))?;
    let mut dev = Net::open(None, Config::default()).map_err(|e| Error::from(e).context("open"))?;
    let mac = dev.mac();
    let mut cfg = IfConfig::new(EthernetAddress(mac).into());
    cfg.random_seed = time::now_ns();
    let mut iface = Interface::new(cfg, &mut dev, net::now());
    iface.update_ip_addrs(|a| {
        let _ = a.push(cidr);
    });
    let mut sockets = SocketSet::new(vec![]);
    let h = sockets.add(tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0u8; 65536]),
        tcp::SocketBuffer::new(vec![0u8; 65536]),
    ));
    let listen = |s: &mut tcp::Socket| {
        s.listen(port)
            .map_err(|e| Error::msg(alloc::format!("listen on {port}: {e:?}")))
    };
    listen(sockets.get_mut::<tcp::Socket>(h))?;
    println!(
        "tcp-echo: mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {cidr}, port {port}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    );
    let mut buf = vec![0u8; 16384];
    let (mut n, mut bytes, mut peer) = (0u32, 0u64, None);
    let request = loop {
        if let Some(r) = control::poll() {
            break r;
        }
        iface.poll(net::now(), &mut dev, &mut sockets);
        if let Some(e) = dev.error() {
            xenfront::bail!("tcp-echo: interface down: {e}");
        }
        let s = sockets.get_mut::<tcp::Socket>(h);
        if s.is_active() && peer.is_none() {
            peer = s.remote_endpoint();
        }
        // Echo what fits in the send buffer; TCP's window holds back the rest.
        while s.can_recv() && s.can_send() {
            let room = buf.len().min(s.send_capacity() - s.send_queue());
            let got = match s.recv_slice(&mut buf[..room]) {
                Ok(0) | Err(_) => break,
                Ok(k) => k,
            };
            if s.send_slice(&buf[..got]) != Ok(got) {
                xenfront::bail!("tcp-echo: send buffer refused what it had room for");
            }
            bytes += got as u64;
        }
        if s.state() == tcp::State::CloseWait && s.send_queue() == 0 && !s.can_recv() {
            s.close();
        }
        if let (Some(p), false) = (peer, s.is_open()) {
            println!("tcp-echo: connection {n} from {p}: echoed {bytes} bytes");
            (n, bytes, peer) = (n + 1, 0, None);
            listen(s)?;
        }
        let wake = iface
            .poll_delay(net::now(), &sockets)
            .map_or(SLICE_NS, |d| d.total_micros() * 1000)
            .min(SLICE_NS);
        dev.wait(time::now_ns() + wake);
    };
    println!(
        "tcp-echo: {} requested after {n} connection(s)",
        request.name()
    );
    drop(sockets);
    dev.close().map_err(|e| Error::from(e).context("close"))?;
    match request {
        ShutdownRequest::Poweroff => Ok(()),
        other => control::obey(other),
    }
}

xenfront::main!(serve);
