//! CAT PTT through hamlib's rigctld network protocol: `T 1` keys, `T 0` unkeys (answered with
//! `RPRT 0`), `t` reads the PTT state back. rigctld talks to the radio over its own serial or
//! USB link, so every radio hamlib supports can be keyed this way.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::error::DeviceError;
use crate::ptt::{PttError, PttOutput};

/// How long to wait for rigctld to connect or answer.
pub const RIGCTLD_TIMEOUT: Duration = Duration::from_secs(2);

/// PTT through a rigctld TCP connection. Unkeys on drop.
#[derive(Debug)]
pub struct RigctldPtt {
    addr: String,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    keyed: bool,
}

impl RigctldPtt {
    /// Connects to rigctld at `addr` (`host:port`, default port 4532) and unkeys.
    pub fn connect(addr: &str) -> Result<Self, PttError> {
        let sock: SocketAddr = addr
            .to_socket_addrs()
            .map_err(|e| PttError::Config(format!("rigctld address {addr}: {e}")))?
            .next()
            .ok_or_else(|| {
                PttError::Config(format!("rigctld address {addr} resolves to nothing"))
            })?;
        let stream =
            TcpStream::connect_timeout(&sock, RIGCTLD_TIMEOUT).map_err(|e| io_err(addr, &e))?;
        stream
            .set_read_timeout(Some(RIGCTLD_TIMEOUT))
            .map_err(|e| io_err(addr, &e))?;
        stream
            .set_write_timeout(Some(RIGCTLD_TIMEOUT))
            .map_err(|e| io_err(addr, &e))?;
        let _ = stream.set_nodelay(true);
        let reader = BufReader::new(stream.try_clone().map_err(|e| io_err(addr, &e))?);
        let mut p = RigctldPtt {
            addr: addr.into(),
            stream,
            reader,
            keyed: true,
        };
        p.set_keyed(false)?;
        Ok(p)
    }

    fn command(&mut self, cmd: &str) -> Result<String, PttError> {
        self.stream
            .write_all(format!("{cmd}\n").as_bytes())
            .map_err(|e| io_err(&self.addr, &e))?;
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| io_err(&self.addr, &e))?;
        if n == 0 {
            return Err(PttError::Device(DeviceError::Lost {
                path: self.addr.clone(),
                detail: "rigctld closed the connection".into(),
            }));
        }
        Ok(line.trim().to_string())
    }

    /// Reads the radio's PTT state back with `t`.
    pub fn read_keyed(&mut self) -> Result<bool, PttError> {
        let ans = self.command("t")?;
        match ans.as_str() {
            "0" => Ok(false),
            "1" | "2" | "3" => Ok(true),
            other => Err(PttError::Cat {
                addr: self.addr.clone(),
                detail: format!("unexpected answer to `t`: {other:?}"),
            }),
        }
    }
}

fn io_err(addr: &str, e: &std::io::Error) -> PttError {
    let detail = match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused: is rigctld running and listening there (`rigctld -m MODEL -r DEVICE -t PORT`)?".to_string(),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "no answer in time: is rigctld hung or the radio not answering it?".to_string(),
        _ => e.to_string(),
    };
    PttError::Device(DeviceError::Lost {
        path: format!("rigctld {addr}"),
        detail,
    })
}

impl PttOutput for RigctldPtt {
    fn set_keyed(&mut self, keyed: bool) -> Result<(), PttError> {
        let ans = self.command(if keyed { "T 1" } else { "T 0" })?;
        if ans != "RPRT 0" {
            return Err(PttError::Cat {
                addr: self.addr.clone(),
                detail: format!("`T {}` answered {ans:?} (rigctld could not set PTT: check its radio link and PTT type)", u8::from(keyed)),
            });
        }
        self.keyed = keyed;
        Ok(())
    }
    fn is_keyed(&self) -> bool {
        self.keyed
    }
    fn describe(&self) -> String {
        format!("CAT PTT via rigctld {}", self.addr)
    }
}

impl Drop for RigctldPtt {
    fn drop(&mut self) {
        // Always unkey: after an error the radio's state is unknown.
        if let Err(e) = self.set_keyed(false) {
            tracing::error!(ptt = %self.describe(), error = %e, "could not unkey on drop");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_connection_says_what_to_fix() {
        // Bind then drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = RigctldPtt::connect(&format!("127.0.0.1:{port}")).unwrap_err();
        assert!(
            matches!(e, PttError::Device(DeviceError::Lost { .. })),
            "{e:?}"
        );
        assert!(e.to_string().contains("is rigctld running"), "{e}");
    }
}
