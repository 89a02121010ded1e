//! Shared by the CLI tests: a child process that is killed if the test fails half-way.

use std::process::{Child, Command};

/// Kills the child on drop (a failed test leaves no server behind).
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// Sends SIGTERM, as Ctrl-C would (the programs stop the same way on both).
    #[allow(dead_code)]
    pub fn terminate(&self) {
        let pid = self.0.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }
}
pub mod chain;
