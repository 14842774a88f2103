//! The real browser the playground's end-to-end test drives: Debian's `chromium` and its W3C
//! WebDriver server `chromedriver` (package `chromium-driver`), installed with apt when
//! `chromedriver` is not on `PATH`. Both come from the distribution's registry: no browser
//! build is downloaded from anywhere else.

use std::path::Path;
use std::process::Command;

use crate::run;

/// The Debian packages that bring `/usr/bin/chromium` and `/usr/bin/chromedriver`.
const PACKAGES: [&str; 2] = ["chromium", "chromium-driver"];

/// Installs Debian's chromium and chromedriver unless `chromedriver` is already on `PATH`.
pub fn setup() -> Result<(), String> {
    if on_path("chromedriver") {
        return Ok(());
    }
    eprintln!("xtask: installing Debian's chromium and chromedriver (for the playground test)");
    run(apt(&["update"]))?;
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(PACKAGES);
    run(apt(&install))?;
    if on_path("chromedriver") {
        Ok(())
    } else {
        Err(format!(
            "{} were installed, but `chromedriver` is still not on PATH",
            PACKAGES.join(" and ")
        ))
    }
}

/// `apt-get args...`, through `sudo` unless this process runs as root, never asking questions.
fn apt(args: &[&str]) -> Command {
    let mut command = if is_root() {
        Command::new("apt-get")
    } else {
        // `sudo` resets the environment: `env` carries the one variable apt needs through it.
        let mut sudo = Command::new("sudo");
        sudo.args(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]);
        sudo
    };
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    command
}

/// Whether this process runs as root: `/proc/self` belongs to the process's effective user.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Whether an executable file `name` is in one of the `PATH` directories.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| is_executable(&dir.join(name))))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
