//! The backend servers: threads of the driver listening inside a bench namespace, fast
//! enough that the path to them, not the server, is what the benchmark measures.
//!
//! Each backend address has a listener with a deep accept queue and a few worker threads
//! that each accept a connection and serve it to the end (blocking I/O: on two cores a
//! handful of threads beat any event loop for this request/response pattern).

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use viking_sandbox::Netns;

use crate::protocol::{BACKENDS, RESPONSE, Request};

/// How long a worker blocks in `accept` before it checks whether to stop.
const ACCEPT_POLL: Duration = Duration::from_millis(100);
/// A client that stops reading or writing for this long is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes per write of a bulk stream.
const BULK_CHUNK: usize = 128 * 1024;
/// Accept queue length: a burst of connects waits in the kernel, not in SYN retries.
const BACKLOG: i32 = 4096;

/// The backend servers of one namespace ([`BACKENDS`]); stopped and joined on drop.
#[derive(Debug)]
pub struct Backends {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Backends {
    /// Starts `workers_per_backend` threads for each backend address inside `netns`.
    pub fn start(netns: &Netns, workers_per_backend: usize) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut backends = Self { stop, workers: Vec::new() };
        for addr in BACKENDS {
            let listener = netns.run(move || listen(addr))?.with_context(|| format!("listening on {addr}"))?;
            let listener = Arc::new(listener);
            for _ in 0..workers_per_backend {
                let (listener, stop) = (listener.clone(), backends.stop.clone());
                backends.workers.push(std::thread::spawn(move || worker(&listener, &stop)));
            }
        }
        Ok(backends)
    }
}

impl Drop for Backends {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// A listening socket created in the calling thread's namespace.
fn listen(addr: SocketAddrV4) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::V4(addr).into())?;
    socket.listen(BACKLOG)?;
    // `accept` honours SO_RCVTIMEO: workers wake up to see the stop flag.
    socket.set_read_timeout(Some(ACCEPT_POLL))?;
    Ok(socket.into())
}

fn worker(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => serve(stream),
            // The poll timeout (to check `stop`) or a handshake the client aborted.
            Err(err)
                if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::ConnectionAborted) => {
            }
            // Anything else (e.g. out of file descriptors): back off instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Serves one connection until the client closes, asks to close, or stalls.
fn serve(mut stream: TcpStream) {
    if stream.set_read_timeout(Some(IO_TIMEOUT)).is_err() || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err() {
        return;
    }
    let mut buf = [0u8; 1024];
    loop {
        let Some(request) = read_request(&mut stream, &mut buf) else {
            return;
        };
        match request {
            Request::Close => {
                // Dropping the stream closes it: the server closes first.
                let _ = stream.write_all(RESPONSE);
                return;
            }
            Request::Keep => {
                if stream.write_all(RESPONSE).is_err() {
                    return;
                }
            }
            Request::Bulk => {
                let chunk = vec![0x5a; BULK_CHUNK];
                // Ends when the client closes (EPIPE/ECONNRESET) or stalls (timeout).
                while stream.write_all(&chunk).is_ok() {}
                return;
            }
        }
    }
}

/// Reads one request head (the benchmark's requests are small and never pipelined).
fn read_request(stream: &mut TcpStream, buf: &mut [u8]) -> Option<Request> {
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return None,
            Ok(n) => len += n,
        }
        if len == buf.len() {
            return None;
        }
    }
    Request::parse(&buf[..len])
}
