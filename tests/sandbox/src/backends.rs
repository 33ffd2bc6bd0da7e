//! Backend servers inside a netns. Each answers with its own name, so a client can tell
//! which backend a VIP connect reached.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::Netns;

/// A server that replies `<name>\n` to every TCP connection (then closes it) or UDP datagram;
/// or, as [`Backend::http`], a minimal HTTP/1.0 server whose body is `<name>\n`.
#[derive(Debug)]
pub struct Backend {
    /// The name it answers with.
    pub name: String,
    /// Where it listens, inside the netns.
    pub addr: SocketAddr,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// A TCP backend on `bind` (port 0 = any) in `netns`: writes its name and closes.
    pub fn tcp(netns: &Netns, name: &str, bind: &str) -> std::io::Result<Self> {
        Self::tcp_serving(netns, name, bind, format!("{name}\n").into_bytes(), false)
    }

    /// An HTTP backend: reads the request head, answers `200 OK` with body `<name>\n`.
    pub fn http(netns: &Netns, name: &str, bind: &str) -> std::io::Result<Self> {
        let body = format!("{name}\n");
        let response = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        Self::tcp_serving(netns, name, bind, response.into_bytes(), true)
    }

    fn tcp_serving(netns: &Netns, name: &str, bind: &str, reply: Vec<u8>, read_request: bool) -> std::io::Result<Self> {
        let bind = bind.to_owned();
        let listener = netns.run(move || TcpListener::bind(bind))??;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        Ok(Self::serve(name, addr, reply, move |reply, stop| {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        if read_request {
                            read_request_head(&mut stream);
                        }
                        let _ = stream.write_all(reply);
                        return true;
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => return false,
                }
            }
            false
        }))
    }

    /// A UDP backend on `bind` in `netns`: answers each datagram to its sender.
    pub fn udp(netns: &Netns, name: &str, bind: &str) -> std::io::Result<Self> {
        let bind = bind.to_owned();
        let socket = netns.run(move || UdpSocket::bind(bind))??;
        socket.set_read_timeout(Some(Duration::from_millis(20)))?;
        let addr = socket.local_addr()?;
        Ok(Self::serve(name, addr, format!("{name}\n").into_bytes(), move |reply, stop| {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((_, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(reply, from);
                    return true;
                }
            }
            false
        }))
    }

    /// Runs `serve_one` in a loop on a thread; it returns whether it served a client.
    fn serve(
        name: &str,
        addr: SocketAddr,
        reply: Vec<u8>,
        mut serve_one: impl FnMut(&[u8], &AtomicBool) -> bool + Send + 'static,
    ) -> Self {
        let served = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (served, stop) = (served.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if serve_one(&reply, &stop) {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Self { name: name.to_owned(), addr, served, stop, thread: Some(thread) }
    }

    /// How many clients it has answered.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads until the end of an HTTP request head (or 1 s, or 8 KiB), so that closing the
/// socket after the reply does not reset it with unread data.
fn read_request_head(stream: &mut std::net::TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < 8192 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

/// `n` TCP backends named `b0..b{n-1}` on `127.0.0.1:<any>` in `netns`.
pub fn tcp_backends(netns: &Netns, n: usize) -> Vec<Backend> {
    (0..n).map(|i| Backend::tcp(netns, &format!("b{i}"), "127.0.0.1:0").expect("start backend")).collect()
}
