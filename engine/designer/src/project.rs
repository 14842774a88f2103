//! Finding and loading flow files from disk. Flows in one directory form one bot: they are
//! compiled together, so that they can jump to and call each other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use influxify_core::source::MAX_FLOW_BYTES;
use influxify_core::{Catalog, Code, Compilation, Diagnostic, Source, compile};

/// A problem reading files (not a problem in a flow: those are diagnostics).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A path does not exist or cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A path is neither a flow file, a test file nor a directory.
    #[error("{0} is not a flow file (.yaml, .yml or .json) or a directory")]
    NotAFlow(PathBuf),
}

/// Whether `path` names a transcript test file (`*.test.yaml`, `*.test.yml`, `*.test.json`).
pub fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    [".test.yaml", ".test.yml", ".test.json"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Whether `path` names a flow file.
pub fn is_flow_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !is_test_file(path)
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Whether a file found in a directory is meant as a flow. A YAML or JSON mapping with none of
/// `id`, `start` and `nodes` (a `package.json`, an editor's settings) is not; anything else is,
/// so that a broken flow file is reported rather than skipped.
pub fn looks_like_flow(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return true;
    };
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text) {
        Ok(serde_yaml_ng::Value::Mapping(map)) => ["id", "start", "nodes"]
            .iter()
            .any(|k| map.contains_key(*k)),
        _ => true,
    }
}

/// The flow and test files named by `paths`, directories walked recursively, sorted.
#[derive(Debug, Default)]
pub struct Found {
    /// Flow files.
    pub flows: Vec<PathBuf>,
    /// Transcript test files.
    pub tests: Vec<PathBuf>,
}

/// Finds the flow and test files under `paths`.
pub fn find(paths: &[PathBuf]) -> Result<Found, LoadError> {
    let mut found = Found::default();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(path, &mut found)?;
        } else if is_test_file(path) {
            found.tests.push(path.clone());
        } else if is_flow_file(path) {
            found.flows.push(path.clone());
        } else {
            return Err(LoadError::NotAFlow(path.clone()));
        }
    }
    found.flows.sort();
    found.flows.dedup();
    found.tests.sort();
    found.tests.dedup();
    Ok(found)
}

fn walk(dir: &Path, found: &mut Found) -> Result<(), LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            walk(&path, found)?;
        } else if is_test_file(&path) {
            found.tests.push(path);
        } else if is_flow_file(&path) && looks_like_flow(&path) {
            found.flows.push(path);
        }
    }
    Ok(())
}

/// The flow files in directory `dir` (not recursive), sorted.
pub fn flows_in(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut flows = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_file() && is_flow_file(&path) && looks_like_flow(&path) {
            flows.push(path);
        }
    }
    flows.sort();
    Ok(flows)
}

/// The directory a file belongs to (`.` for a bare file name).
pub fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The canonical form of `path` for comparisons (the path itself when it cannot be resolved).
pub fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Groups files by directory.
pub fn by_dir(files: &[PathBuf]) -> BTreeMap<PathBuf, Vec<PathBuf>> {
    let mut groups: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for file in files {
        groups.entry(dir_of(file)).or_default().push(file.clone());
    }
    groups
}

/// Reads a flow file, turning what cannot be read as text into a diagnostic.
pub fn read_source(path: &Path) -> Result<Source, Diagnostic> {
    let name = path.display().to_string();
    let fail = |message: String| {
        let mut d = Diagnostic::error(Code::Syntax, message);
        d.file = Some(name.clone());
        d
    };
    let meta =
        std::fs::metadata(path).map_err(|err| fail(format!("cannot read the file: {err}")))?;
    if meta.len() > MAX_FLOW_BYTES as u64 {
        return Err(fail(format!(
            "the file is {} bytes; flow files are limited to {MAX_FLOW_BYTES} bytes",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|err| fail(format!("cannot read the file: {err}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|err| fail(format!("the file is not UTF-8 text: {err}")))?;
    Ok(Source::new(name, text))
}

/// Compiles every flow file of `dir` together.
pub fn compile_dir(dir: &Path, catalog: Option<&Catalog>) -> Result<Compilation, LoadError> {
    let files = flows_in(dir)?;
    Ok(compile_files(&files, catalog))
}

/// Compiles `files` together.
pub fn compile_files(files: &[PathBuf], catalog: Option<&Catalog>) -> Compilation {
    let mut sources = Vec::new();
    let mut unreadable = Vec::new();
    for file in files {
        match read_source(file) {
            Ok(source) => sources.push(source),
            Err(d) => unreadable.push(d),
        }
    }
    let mut compilation = compile(&sources, catalog);
    if !unreadable.is_empty() {
        compilation.flows = None;
        unreadable.extend(compilation.diagnostics);
        compilation.diagnostics = unreadable;
    }
    compilation
}
