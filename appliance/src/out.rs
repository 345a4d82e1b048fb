//! Writing the CLI's output to stdout without `println!`'s panic on a
//! closed pipe. Rust ignores SIGPIPE, so `hotpair status --json | head -n 2`
//! made the next `println!` fail with EPIPE and panic (exit 101). Restoring
//! SIGPIPE's default action instead would also kill the commands that write
//! to sockets (the lab asks admin sockets), so output goes through here:
//! a reader that went away ends the output quietly, as other Unix tools
//! do, and the command keeps its own exit status (`status --check`'s code
//! must survive `| head -n 0`).

use std::io::Write;

use anyhow::{Context, Result};

/// Writes `args` to stdout and flushes. A closed pipe is not an error:
/// what the reader did not want is dropped. Any other failure (a full
/// disk) is.
pub fn print(args: std::fmt::Arguments<'_>) -> Result<()> {
    let mut o = std::io::stdout().lock();
    match o.write_fmt(args).and_then(|()| o.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

/// `println!` through [`print`]: evaluates to `anyhow::Result<()>`.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`print`]: evaluates to `anyhow::Result<()>`.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::print(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    /// stdout a pipe whose reader is gone: no panic, no error. Run in a
    /// child process (the test harness owns this one's stdout), which
    /// points its fd 1 at such a pipe once the harness has written.
    #[test]
    fn a_closed_pipe_ends_the_output_quietly() {
        if std::env::var_os("HOTPAIR_OUT_CHILD").is_some() {
            use std::io::Write;
            let _ = std::io::stdout().flush();
            let mut fds = [0; 2];
            // SAFETY: a two-int array for pipe(2); dup2 and close on the
            // fds it just made.
            unsafe {
                assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
                libc::close(fds[0]);
                assert_eq!(libc::dup2(fds[1], 1), 1);
            }
            // The first write already meets the closed pipe.
            for _ in 0..1000 {
                crate::outln!("{}", "x".repeat(100)).unwrap();
            }
            crate::out!("no newline").unwrap();
            std::process::exit(7);
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "out::tests::a_closed_pipe_ends_the_output_quietly",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HOTPAIR_OUT_CHILD", "1")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(7),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
