//! Waiting for a test server process to listen on its loopback port:
//! shared by the S3 and SSH server harnesses.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

/// Waits up to 20 s for `child` (`what`, for messages) to take
/// connections on `port`; `log` gives its output for the error. The child
/// is killed on failure.
pub fn wait_listening(
    mut child: Child,
    port: u16,
    what: &str,
    log: &dyn Fn() -> String,
) -> Result<Child, String> {
    let start = Instant::now();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("{what} on port {port} exited with {st}: {}", log()));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            // Something answers: ours, unless it failed to bind the port
            // (taken by another program) and is exiting.
            std::thread::sleep(Duration::from_millis(50));
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("{what} on port {port} exited with {st}: port taken?"));
            }
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("{what} did not listen on port {port} within 20 s: {}", log()))
}
