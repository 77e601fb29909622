//! Steady plain-HTTP traffic through the guardian from several client
//! threads, some on keep-alive connections and some opening a connection
//! per request, each thread running until a request fails or it is told
//! to stop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request: `POST <url>` with `body`, expecting `200` with `answer`.
#[derive(Debug, Clone)]
pub struct Request {
    /// Absolute `http://host:port/path` URL (the proxy's request target).
    pub url: String,
    /// The request body.
    pub body: String,
    /// The response body the upstream sends.
    pub answer: String,
}

/// A connection to the proxy that sends requests on it in turn.
#[derive(Debug)]
pub struct ProxyConnection {
    reader: BufReader<TcpStream>,
    keep_alive: bool,
}

impl ProxyConnection {
    /// Connects to the proxy at `proxy`.
    pub fn open(proxy: SocketAddr, keep_alive: bool) -> std::io::Result<ProxyConnection> {
        let stream = TcpStream::connect(proxy)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(ProxyConnection {
            reader: BufReader::new(stream),
            keep_alive,
        })
    }

    /// Sends `request` and reads the whole response; an error unless it is
    /// `200` with exactly the expected body.
    pub fn send(&mut self, request: &Request) -> Result<(), String> {
        let host = request
            .url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default();
        let connection = if self.keep_alive {
            "keep-alive"
        } else {
            "close"
        };
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
            request.url,
            request.body.len()
        );
        let stream = self.reader.get_mut();
        stream
            .write_all(format!("{head}{}", request.body).as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let (status, body) = self.read_response().map_err(|e| format!("receive: {e}"))?;
        if status != 200 || body != request.answer.as_bytes() {
            return Err(format!("got {status} {:?}", String::from_utf8_lossy(&body)));
        }
        Ok(())
    }

    fn read_response(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.parse::<usize>().map_err(|_| bad("content-length"))?);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad("chunk size"))?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(length) = length {
            body.resize(length, 0);
            self.reader.read_exact(&mut body)?;
        } else {
            self.reader.read_to_end(&mut body)?;
        }
        Ok((status, body))
    }
}

/// What one load thread did.
#[derive(Debug, Clone, Default)]
pub struct ThreadReport {
    /// Whether it kept its connection alive between requests.
    pub keep_alive: bool,
    /// Requests answered in full.
    pub answered: u64,
    /// The failure that ended it, if one did (rather than a stop).
    pub error: Option<String>,
}

/// Client threads sending `request` through a proxy in a loop.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<JoinHandle<ThreadReport>>,
}

impl Load {
    /// Starts `threads` client threads through the proxy at `proxy`: the
    /// even ones keep their connection alive, the odd ones open one per
    /// request. Each runs until a request fails or [`Load::finish`].
    pub fn start(proxy: SocketAddr, request: &Request, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|i| {
                let keep_alive = i % 2 == 0;
                let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
                let request = request.clone();
                std::thread::spawn(move || {
                    let mut report = ThreadReport {
                        keep_alive,
                        ..ThreadReport::default()
                    };
                    let mut conn: Option<ProxyConnection> = None;
                    while !stop.load(Ordering::SeqCst) {
                        let sent = match conn.take() {
                            Some(open) => Ok(open),
                            None => ProxyConnection::open(proxy, keep_alive)
                                .map_err(|e| format!("connect: {e}")),
                        }
                        .and_then(|mut open| open.send(&request).map(|()| open));
                        match sent {
                            Ok(open) => {
                                report.answered += 1;
                                answered.fetch_add(1, Ordering::SeqCst);
                                if keep_alive {
                                    conn = Some(open);
                                }
                            }
                            Err(error) => {
                                failed.fetch_add(1, Ordering::SeqCst);
                                report.error = Some(error);
                                break;
                            }
                        }
                    }
                    report
                })
            })
            .collect();
        Load {
            stop,
            answered,
            failed,
            threads,
        }
    }

    /// Requests answered in full so far, over all threads.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }

    /// Threads that have ended on a failed request so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    /// Waits for every thread to end by itself (a failed request), then
    /// returns what each did.
    pub fn join(mut self) -> Vec<ThreadReport> {
        std::mem::take(&mut self.threads)
            .into_iter()
            .map(|t| t.join().expect("load thread panicked"))
            .collect()
    }

    /// Tells every thread to stop after its current request, and waits.
    pub fn finish(self) -> Vec<ThreadReport> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }
}

impl Drop for Load {
    /// Threads a failed test leaves behind stop after their current request.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
