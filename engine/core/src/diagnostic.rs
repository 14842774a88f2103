//! Diagnostics for flow authors: a stable code, a severity, the node and a file position.

use std::fmt;

use serde::Serialize;

/// A stable diagnostic code. The numbers never change meaning; new checks get new numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Code {
    /// F0001: the file is not valid YAML/JSON, is empty, too large or too deeply nested.
    Syntax,
    /// F0002: a field has the wrong type or an unknown name.
    Shape,
    /// F0003: the start node is missing or unknown.
    Start,
    /// F0004: an edge leads to a node that does not exist.
    UnknownNode,
    /// F0005: a node can never be reached from the start or an intent.
    Unreachable,
    /// F0006: a node other than `end` has no way out (a missing `next`, an outcome no edge handles).
    DeadEnd,
    /// F0007: a cycle that never waits for the user would loop forever in one turn.
    BusyCycle,
    /// F0008: a variable is used but never declared or set.
    UndefinedVariable,
    /// F0009: a template does not compile.
    TemplateSyntax,
    /// F0010: an expression does not compile.
    ExpressionSyntax,
    /// F0011: two nodes (or two keys of one map) have the same id.
    Duplicate,
    /// F0012: a node has an unknown `kind`.
    UnknownKind,
    /// F0013: a plugin node names an action that no installed plugin provides.
    UnknownAction,
    /// F0014: a plugin node handles an outcome that its action never produces.
    UnknownOutcome,
    /// F0015: a reference to a flow that is not loaded.
    UnknownFlow,
    /// F0016: more quick replies than Messenger shows (13).
    TooManyQuickReplies,
    /// F0017: a quick-reply or button title over Messenger's 20 characters.
    TitleTooLong,
    /// F0018: more buttons than Messenger allows (3).
    TooManyButtons,
    /// F0019: a text over Messenger's 2000 characters.
    TextTooLong,
    /// F0020: a validation rule is itself invalid (bad regex, min above max, no choices).
    BadValidation,
    /// F0021: an id or reference is malformed (a bad variable name, a button with both `payload`
    /// and `url`, an intent without exactly one target).
    BadReference,
    /// F0022: a default value does not match its variable's type.
    BadDefault,
    /// F0023: a plugin node's input does not match its action's input schema.
    BadInput,
    /// F0024: a message tag that Messenger no longer accepts, or one a bot may not use.
    RetiredTag,
    /// F0025: a text that renders empty when its variables are empty, without a `fallback`.
    MayRenderEmpty,
}

impl Code {
    /// The stable code, e.g. `F0004`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "F0001",
            Code::Shape => "F0002",
            Code::Start => "F0003",
            Code::UnknownNode => "F0004",
            Code::Unreachable => "F0005",
            Code::DeadEnd => "F0006",
            Code::BusyCycle => "F0007",
            Code::UndefinedVariable => "F0008",
            Code::TemplateSyntax => "F0009",
            Code::ExpressionSyntax => "F0010",
            Code::Duplicate => "F0011",
            Code::UnknownKind => "F0012",
            Code::UnknownAction => "F0013",
            Code::UnknownOutcome => "F0014",
            Code::UnknownFlow => "F0015",
            Code::TooManyQuickReplies => "F0016",
            Code::TitleTooLong => "F0017",
            Code::TooManyButtons => "F0018",
            Code::TextTooLong => "F0019",
            Code::BadValidation => "F0020",
            Code::BadReference => "F0021",
            Code::BadDefault => "F0022",
            Code::BadInput => "F0023",
            Code::RetiredTag => "F0024",
            Code::MayRenderEmpty => "F0025",
        }
    }

    /// A short name of the check, e.g. `unknown-node`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Syntax => "syntax",
            Code::Shape => "shape",
            Code::Start => "start",
            Code::UnknownNode => "unknown-node",
            Code::Unreachable => "unreachable",
            Code::DeadEnd => "dead-end",
            Code::BusyCycle => "busy-cycle",
            Code::UndefinedVariable => "undefined-variable",
            Code::TemplateSyntax => "template-syntax",
            Code::ExpressionSyntax => "expression-syntax",
            Code::Duplicate => "duplicate",
            Code::UnknownKind => "unknown-kind",
            Code::UnknownAction => "unknown-action",
            Code::UnknownOutcome => "unknown-outcome",
            Code::UnknownFlow => "unknown-flow",
            Code::TooManyQuickReplies => "too-many-quick-replies",
            Code::TitleTooLong => "title-too-long",
            Code::TooManyButtons => "too-many-buttons",
            Code::TextTooLong => "text-too-long",
            Code::BadValidation => "bad-validation",
            Code::BadReference => "bad-reference",
            Code::BadDefault => "bad-default",
            Code::BadInput => "bad-input",
            Code::RetiredTag => "retired-tag",
            Code::MayRenderEmpty => "may-render-empty",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a diagnostic is. Only errors make a flow unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look; the flow still loads.
    Warning,
    /// The flow cannot be used.
    Error,
}

/// A 1-based position in a flow file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

/// One problem found in a flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    /// The stable code.
    #[serde(serialize_with = "serialize_code")]
    pub code: Code,
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, in one sentence.
    pub message: String,
    /// The flow file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The node concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Where in the file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// How to fix it, when there is an obvious way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

fn serialize_code<S: serde::Serializer>(code: &Code, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(code.as_str())
}

impl Diagnostic {
    /// An error with `code` and `message`.
    pub fn error(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            file: None,
            node: None,
            position: None,
            help: None,
        }
    }

    /// A warning with `code` and `message`.
    pub fn warning(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    /// The same diagnostic about `node`.
    pub fn at_node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// The same diagnostic at `position` (kept when already set and `position` is `None`).
    pub fn at(mut self, position: Option<Position>) -> Self {
        if position.is_some() {
            self.position = position;
        }
        self
    }

    /// The same diagnostic with a hint.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// Renders like a compiler: `error[F0004]: ... \n  --> file:line:col (node `x`)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{level}[{}]: {}", self.code, self.message)?;
        let file = self.file.as_deref().unwrap_or("<flow>");
        match (self.position, &self.node) {
            (Some(p), Some(node)) => {
                write!(f, "\n  --> {file}:{}:{} (node `{node}`)", p.line, p.column)?
            }
            (Some(p), None) => write!(f, "\n  --> {file}:{}:{}", p.line, p.column)?,
            (None, Some(node)) => write!(f, "\n  --> {file} (node `{node}`)")?,
            (None, None) => write!(f, "\n  --> {file}")?,
        }
        if let Some(help) = &self.help {
            write!(f, "\n   = help: {help}")?;
        }
        Ok(())
    }
}
