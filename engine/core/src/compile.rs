//! Compiles flow files into a [`FlowSet`]: resolves edges, compiles templates, expressions and
//! validations, and collects every diagnostic on the way. A set is produced only without errors.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use regex::{Regex, RegexBuilder};

use crate::catalog::{Catalog, STANDARD_OUTCOMES};
use crate::checks;
use crate::compiled::*;
use crate::diagnostic::{Code, Diagnostic, Position};
use crate::model::{self, Node, Validation, VariableType};
use crate::source::{self, ParsedFlow, Source};
use crate::suggest::did_you_mean;
use crate::template::{self, Expr, Templates, Text};

/// The result of compiling flow files.
#[derive(Debug)]
pub struct Compilation {
    /// The compiled flows, when there was no error.
    pub flows: Option<FlowSet>,
    /// Errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compilation {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Parses, compiles and validates flow files that may refer to each other. Plugin actions are
/// checked against `catalog` when one is given.
pub fn compile(sources: &[Source], catalog: Option<&Catalog>) -> Compilation {
    let mut diagnostics = Vec::new();
    let mut parsed = Vec::new();
    for source in sources {
        let (flow, found) = source::parse(source);
        diagnostics.extend(found);
        parsed.extend(flow);
    }
    let flows = compile_parsed(&parsed, catalog, &mut diagnostics);
    // In file order, as a compiler prints them.
    let order: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    diagnostics.sort_by_key(|d| {
        let file = d
            .file
            .as_deref()
            .and_then(|f| order.iter().position(|o| *o == f));
        (file, d.position.map(|p| (p.line, p.column)))
    });
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    Compilation {
        flows: flows.filter(|_| !has_errors),
        diagnostics,
    }
}

/// What every flow of a set may know of the others.
pub(crate) struct SetInfo {
    /// Node ids (broken ones included) by flow id.
    pub nodes: HashMap<String, HashSet<String>>,
    /// Every variable declared or assigned anywhere in the set.
    pub variables: HashSet<String>,
}

fn compile_parsed(
    parsed: &[ParsedFlow],
    catalog: Option<&Catalog>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<FlowSet> {
    let mut info = SetInfo {
        nodes: HashMap::new(),
        variables: HashSet::new(),
    };
    // A flow id used twice is reported on every file that uses it.
    let mut files_by_id: HashMap<&str, Vec<&str>> = HashMap::new();
    for p in parsed {
        files_by_id.entry(&p.flow.id).or_default().push(&p.file);
    }
    for p in parsed {
        let others: Vec<&str> = files_by_id[p.flow.id.as_str()]
            .iter()
            .copied()
            .filter(|f| *f != p.file)
            .collect();
        if !others.is_empty() {
            diagnostics.push(
                Diagnostic::error(
                    Code::Duplicate,
                    format!(
                        "flow id `{}` is also used by {}",
                        p.flow.id,
                        others.join(", ")
                    ),
                )
                .at(p.positions.get(&["id"]))
                .with_file(&p.file),
            );
        }
        let nodes = p
            .flow
            .nodes
            .keys()
            .chain(p.broken_nodes.iter())
            .cloned()
            .collect();
        info.nodes.insert(p.flow.id.clone(), nodes);
        info.variables.extend(assigned_variables(&p.flow));
    }

    let mut set = FlowSet::default();
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut compiled = Vec::new();
    for p in parsed {
        let mut compiler = FlowCompiler::new(p, &info, catalog);
        let flow = compiler.compile();
        entries.append(&mut compiler.external_entries);
        diagnostics.extend(
            compiler
                .diagnostics
                .into_iter()
                .map(|d| d.with_file(&p.file)),
        );
        compiled.push((p, flow));
    }
    for (p, flow) in compiled {
        let extra_roots: Vec<&str> = entries
            .iter()
            .filter(|(flow_id, _)| flow_id == &p.flow.id)
            .map(|(_, node)| node.as_str())
            .collect();
        let found = checks::graph(p, &flow, &extra_roots);
        diagnostics.extend(found.into_iter().map(|d| d.with_file(&p.file)));
        if let Some(flow) = flow {
            set.insert(Arc::new(flow));
        }
    }
    Some(set)
}

/// Every variable a flow declares or assigns.
fn assigned_variables(flow: &model::Flow) -> Vec<String> {
    let mut names: Vec<String> = flow.variables.keys().cloned().collect();
    for node in flow.nodes.values() {
        match node {
            Node::Ask(ask) => names.push(ask.store.clone()),
            Node::Set(set) => names.extend(set.assign.keys().cloned()),
            Node::Plugin(plugin) => {
                names.extend(plugin.save.clone());
                names.extend(plugin.outputs.keys().cloned());
            }
            _ => {}
        }
    }
    names
}

static IDENTIFIER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]*$").expect("valid regex"));
static FLOW_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_-]+$").expect("valid regex"));
static ACTION_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9_-]+\.[a-z0-9_.-]+$").expect("valid regex"));

/// Names that the engine sets and flows may not assign.
const RESERVED: &[&str] = &["message", "now", "output", "referral", "user"];

const MAX_QUICK_REPLIES: usize = 13;
const MAX_BUTTONS: usize = 3;
const MAX_TITLE_CHARS: usize = 20;
const MAX_TEXT_CHARS: usize = 2000;
const MAX_BUTTON_TEXT_CHARS: usize = 640;

/// Diagnostics after which "did you mean" hints are no longer computed.
const MAX_SUGGESTIONS: usize = 100;

/// A placeholder index for edges that did not resolve; the flow is not produced then.
const BROKEN: NodeIx = usize::MAX;

struct FlowCompiler<'a> {
    parsed: &'a ParsedFlow,
    info: &'a SetInfo,
    catalog: Option<&'a Catalog>,
    index: HashMap<String, NodeIx>,
    templates: Templates,
    diagnostics: Vec<Diagnostic>,
    /// Nodes of other flows entered by this flow's jumps: (flow, node).
    external_entries: Vec<(String, String)>,
    /// The node being compiled.
    node: String,
    /// Templates compiled so far, for unique names.
    template_count: usize,
    profile_fields: std::collections::BTreeSet<String>,
    errors_before: usize,
}

impl<'a> FlowCompiler<'a> {
    fn new(parsed: &'a ParsedFlow, info: &'a SetInfo, catalog: Option<&'a Catalog>) -> Self {
        let index = parsed
            .flow
            .nodes
            .keys()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        FlowCompiler {
            parsed,
            info,
            catalog,
            index,
            templates: Templates::default(),
            diagnostics: Vec::new(),
            external_entries: Vec::new(),
            node: String::new(),
            template_count: 0,
            profile_fields: Default::default(),
            errors_before: 0,
        }
    }

    fn compile(&mut self) -> Option<CompiledFlow> {
        let flow = &self.parsed.flow;
        self.errors_before = self.diagnostics.len();
        if !FLOW_ID.is_match(&flow.id) {
            self.error_at(
                Code::BadReference,
                format!(
                    "flow id `{}` may only use letters, digits, `-` and `_`",
                    flow.id
                ),
                self.parsed.positions.get(&["id"]),
            );
        }
        let defaults = self.variables();
        let start = match self.index.get(&flow.start) {
            Some(ix) => *ix,
            // The start node exists but did not parse: that error is already reported.
            None if self.parsed.broken_nodes.contains(&flow.start) => BROKEN,
            None => {
                let mut d = Diagnostic::error(
                    Code::Start,
                    format!("start node `{}` does not exist", flow.start),
                )
                .at(self.parsed.positions.get(&["start"]));
                d = match did_you_mean(&flow.start, flow.nodes.keys().map(String::as_str)) {
                    Some(best) => d.help(format!("did you mean `{best}`?")),
                    None if flow.nodes.is_empty() => d.help("the flow has no nodes"),
                    None => d,
                };
                self.diagnostics.push(d);
                BROKEN
            }
        };
        let intents = self.intents();
        let mut nodes = Vec::with_capacity(flow.nodes.len());
        for (id, node) in &flow.nodes {
            self.node = id.clone();
            let op = self.node_op(id, node);
            nodes.push(CompiledNode { id: id.clone(), op });
        }
        self.node.clear();
        let failed = self.diagnostics[self.errors_before..]
            .iter()
            .any(Diagnostic::is_error)
            || !self.parsed.broken_nodes.is_empty();
        if failed {
            return None;
        }
        Some(CompiledFlow {
            id: flow.id.clone(),
            source: flow.clone(),
            file: self.parsed.file.clone(),
            start,
            nodes,
            intents,
            defaults,
            index: std::mem::take(&mut self.index),
            templates: std::mem::take(&mut self.templates),
            profile_fields: std::mem::take(&mut self.profile_fields),
        })
    }

    // ---- diagnostics -------------------------------------------------------------------------

    fn error_at(&mut self, code: Code, message: String, position: Option<Position>) {
        let mut d = Diagnostic::error(code, message).at(position);
        if !self.node.is_empty() {
            d = d.at_node(self.node.clone());
        }
        self.diagnostics.push(d);
    }

    fn field_pos(&self, field: &str) -> Option<Position> {
        self.parsed.positions.node_field(&self.node, field)
    }

    fn error(&mut self, code: Code, field: &str, message: String) {
        let position = self.field_pos(field);
        self.error_at(code, message, position);
    }

    // ---- variables and intents ---------------------------------------------------------------

    fn variables(&mut self) -> Vec<(String, serde_json::Value)> {
        let mut defaults = Vec::new();
        for (name, variable) in &self.parsed.flow.variables {
            let position = self.parsed.positions.get(&["variables", name]);
            self.check_identifier(name, position);
            // Without a default, text, lists and maps start empty (so `| length` works); other
            // types start as null, which templates print as nothing.
            let value = variable.default.clone().unwrap_or(match variable.ty {
                VariableType::String => serde_json::Value::String(String::new()),
                VariableType::List => serde_json::Value::Array(Vec::new()),
                VariableType::Object => serde_json::Value::Object(serde_json::Map::new()),
                _ => serde_json::Value::Null,
            });
            if !variable.ty.accepts(&value) {
                self.error_at(
                    Code::BadDefault,
                    format!(
                        "the default of `{name}` is {value}, which is not a {:?}",
                        variable.ty
                    )
                    .to_lowercase(),
                    position,
                );
            }
            defaults.push((name.clone(), value));
        }
        defaults
    }

    fn check_identifier(&mut self, name: &str, position: Option<Position>) {
        if !IDENTIFIER.is_match(name) {
            self.error_at(
                Code::BadReference,
                format!("`{name}` is not a valid variable name (letters, digits and `_`, not starting with a digit)"),
                position,
            );
        } else if RESERVED.contains(&name) {
            self.error_at(
                Code::BadReference,
                format!("`{name}` is set by the engine and cannot be assigned by a flow"),
                position,
            );
        }
    }

    fn intents(&mut self) -> Vec<CompiledIntent> {
        let mut intents = Vec::new();
        for (name, intent) in &self.parsed.flow.intents {
            let position = self.parsed.positions.get(&["intents", name]);
            let targets = [&intent.goto, &intent.flow, &intent.call]
                .iter()
                .filter(|t| t.is_some())
                .count();
            if targets != 1 {
                self.error_at(
                    Code::BadReference,
                    format!("intent `{name}` needs exactly one of `goto`, `flow` or `call`"),
                    position,
                );
                continue;
            }
            if intent.keywords.is_empty() && intent.payloads.is_empty() {
                self.error_at(
                    Code::BadReference,
                    format!("intent `{name}` has no `keywords` and no `payloads`, so nothing can trigger it"),
                    position,
                );
            }
            let target = if let Some(goto) = &intent.goto {
                IntentAction::Goto(self.resolve(goto, position, &format!("intent `{name}`")))
            } else if let Some(flow) = &intent.flow {
                self.check_flow(flow, position);
                IntentAction::Flow(flow.clone())
            } else if let Some(call) = &intent.call {
                self.check_flow(call, position);
                IntentAction::Call(call.clone())
            } else {
                continue;
            };
            intents.push(CompiledIntent {
                name: name.clone(),
                keywords: intent
                    .keywords
                    .iter()
                    .map(|k| normalize_keyword(k))
                    .collect(),
                payloads: intent.payloads.clone(),
                target,
            });
        }
        intents
    }

    // ---- references --------------------------------------------------------------------------

    /// Resolves an edge to a node of this flow.
    fn resolve(&mut self, target: &str, position: Option<Position>, what: &str) -> NodeIx {
        if let Some(ix) = self.index.get(target) {
            return *ix;
        }
        if !self.parsed.broken_nodes.contains(target) {
            let mut d = Diagnostic::error(
                Code::UnknownNode,
                format!("{what} leads to unknown node `{target}`"),
            )
            .at(position);
            if !self.node.is_empty() {
                d = d.at_node(self.node.clone());
            }
            // Suggestions cost a comparison with every node: only for the first few problems.
            if self.diagnostics.len() < MAX_SUGGESTIONS
                && let Some(best) = did_you_mean(target, self.index.keys().map(String::as_str))
            {
                d = d.help(format!("did you mean `{best}`?"));
            }
            self.diagnostics.push(d);
        }
        BROKEN
    }

    fn edge(&mut self, field: &str, target: &str) -> NodeIx {
        let position = self.field_pos(field);
        let what = format!("`{field}`");
        self.resolve(target, position, &what)
    }

    /// A required edge: a missing one makes the node a dead end.
    fn required(&mut self, field: &str, kind: &str, target: Option<&String>) -> NodeIx {
        match target {
            Some(target) => self.edge(field, target),
            None => {
                let message = format!(
                    "`{kind}` node `{}` has no `{field}`, so the conversation would stop here",
                    self.node
                );
                let position = self.parsed.positions.node(&self.node);
                let d = Diagnostic::error(Code::DeadEnd, message)
                    .at_node(self.node.clone())
                    .at(position)
                    .help(format!("add `{field}: <node>`, or lead to an `end` node"));
                self.diagnostics.push(d);
                BROKEN
            }
        }
    }

    fn check_flow(&mut self, flow: &str, position: Option<Position>) {
        if !self.info.nodes.contains_key(flow) {
            let mut d = Diagnostic::error(Code::UnknownFlow, format!("flow `{flow}` is not loaded"))
                .at(position)
                .help("flows refer to flows in the same directory; validate the directory, or pass that file too");
            if !self.node.is_empty() {
                d = d.at_node(self.node.clone());
            }
            if let Some(best) = did_you_mean(flow, self.info.nodes.keys().map(String::as_str)) {
                d = d.help(format!("did you mean `{best}`?"));
            }
            self.diagnostics.push(d);
        }
    }

    // ---- templates and expressions -----------------------------------------------------------

    fn text(&mut self, field: &str, source: &str) -> Text {
        self.text_with(field, source, &[])
    }

    fn text_with(&mut self, field: &str, source: &str, extra: &[&str]) -> Text {
        // Every template gets a unique name: two texts of one field must not replace each other.
        self.template_count += 1;
        let name = format!("{}.{field}#{}", self.node, self.template_count);
        match self.templates.add(name, source) {
            Ok((text, variables)) => {
                if variables.contains("user") {
                    let fields = self.templates.user_fields(&text);
                    self.profile_fields.extend(fields);
                }
                self.check_variables(field, variables, extra);
                self.check_filters(field, source, false);
                text
            }
            Err(err) => {
                self.error(
                    Code::TemplateSyntax,
                    field,
                    format!("template error in `{field}`: {err}"),
                );
                Text::Plain(String::new())
            }
        }
    }

    fn expr(&mut self, field: &str, source: &str, extra: &[&str]) -> Option<Expr> {
        match Expr::compile(source) {
            Ok(expr) => {
                let variables = expr.variables();
                if variables.contains("user") {
                    self.profile_fields.extend(expr.user_fields());
                }
                self.check_variables(field, variables, extra);
                self.check_filters(field, source, true);
                Some(expr)
            }
            Err(err) => {
                self.error(
                    Code::ExpressionSyntax,
                    field,
                    format!("expression error in `{field}` (`{source}`): {err}"),
                );
                None
            }
        }
    }

    fn check_filters(&mut self, field: &str, source: &str, in_expression: bool) {
        for unknown in template::unknown_filters_and_tests(source, in_expression) {
            let code = if in_expression {
                Code::ExpressionSyntax
            } else {
                Code::TemplateSyntax
            };
            self.error(
                code,
                field,
                format!("`{field}` uses {unknown}, which does not exist"),
            );
        }
    }

    fn check_variables(&mut self, field: &str, variables: HashSet<String>, extra: &[&str]) {
        let mut unknown: Vec<String> = variables
            .into_iter()
            .filter(|v| {
                !self.info.variables.contains(v)
                    && !template::BUILTIN_NAMES.contains(&v.as_str())
                    && !extra.contains(&v.as_str())
            })
            .collect();
        unknown.sort();
        for name in unknown {
            let known: Vec<&str> = self.info.variables.iter().map(String::as_str).collect();
            let mut d = Diagnostic::error(
                Code::UndefinedVariable,
                format!("`{field}` uses variable `{name}`, which is never declared or set"),
            )
            .at_node(self.node.clone())
            .at(self.field_pos(field));
            d = match did_you_mean(&name, known) {
                Some(best) => d.help(format!("did you mean `{best}`?")),
                None if name == "output" => {
                    d.help("`output` exists only in a plugin node's `outputs`")
                }
                None => d.help(format!(
                    "declare it under `variables:` (e.g. `{name}: {{ type: string }}`)"
                )),
            };
            self.diagnostics.push(d);
        }
    }

    fn input(&mut self, field: &str, value: &serde_json::Value) -> Input {
        match value {
            serde_json::Value::String(source) => match single_expression(source) {
                Some(expr) => self
                    .expr(field, expr, &[])
                    .map(Input::Expr)
                    .unwrap_or(Input::Literal(serde_json::Value::Null)),
                None => Input::Text(self.text(field, source)),
            },
            serde_json::Value::Array(items) => {
                Input::List(items.iter().map(|item| self.input(field, item)).collect())
            }
            serde_json::Value::Object(map) => Input::Map(
                map.iter()
                    .map(|(key, item)| (key.clone(), self.input(field, item)))
                    .collect(),
            ),
            other => Input::Literal(other.clone()),
        }
    }

    // ---- Messenger limits --------------------------------------------------------------------

    fn check_text_len(&mut self, field: &str, source: &str, limit: usize, why: &str) {
        if source.trim().is_empty() {
            self.error(
                Code::Shape,
                field,
                format!("{why} is empty; Messenger refuses empty messages"),
            );
            return;
        }
        if template::has_template_syntax(source) {
            return;
        }
        let chars = source.chars().count();
        if chars > limit {
            self.error(
                Code::TextTooLong,
                field,
                format!("{why} is {chars} characters; Messenger allows {limit}"),
            );
        }
    }

    fn check_title(&mut self, field: &str, title: &str) {
        if title.trim().is_empty() {
            self.error(Code::Shape, field, "a title is empty".to_string());
            return;
        }
        // What a reader sees as one character (an emoji with modifiers) counts as one.
        let chars = unicode_segmentation::UnicodeSegmentation::graphemes(title, true).count();
        if !template::has_template_syntax(title) && chars > MAX_TITLE_CHARS {
            self.error(
                Code::TitleTooLong,
                field,
                format!("title \"{title}\" is {chars} characters; Messenger cuts titles at {MAX_TITLE_CHARS}"),
            );
        }
    }

    fn quick_replies(
        &mut self,
        replies: &[model::QuickReply],
        choices: &[model::Choice],
    ) -> Vec<CompiledQuickReply> {
        let count = replies.len() + choices.len();
        if count > MAX_QUICK_REPLIES {
            self.error(
                Code::TooManyQuickReplies,
                if choices.is_empty() {
                    "quick_replies"
                } else {
                    "validate"
                },
                format!("{count} quick replies; Messenger shows at most {MAX_QUICK_REPLIES}"),
            );
        }
        let mut compiled = Vec::with_capacity(count);
        for reply in replies {
            self.check_title("quick_replies", &reply.title);
            let title = self.text("quick_replies", &reply.title);
            let payload = match &reply.payload {
                Some(payload) => self.text("quick_replies", payload),
                None => title.clone(),
            };
            compiled.push(CompiledQuickReply { title, payload });
        }
        for choice in choices {
            self.check_title("validate", &choice.title);
            compiled.push(CompiledQuickReply {
                title: Text::Plain(choice.title.clone()),
                payload: Text::Plain(choice.value().to_string()),
            });
        }
        compiled
    }

    fn buttons(&mut self, buttons: &[model::Button]) -> Vec<CompiledButton> {
        if buttons.len() > MAX_BUTTONS {
            self.error(
                Code::TooManyButtons,
                "buttons",
                format!(
                    "{} buttons; Messenger allows at most {MAX_BUTTONS}",
                    buttons.len()
                ),
            );
        }
        let mut compiled = Vec::new();
        for button in buttons {
            self.check_title("buttons", &button.title);
            let title = self.text("buttons", &button.title);
            let action = match (&button.payload, &button.url) {
                (Some(payload), None) => {
                    CompiledButtonAction::Postback(self.text("buttons", payload))
                }
                (None, Some(url)) => CompiledButtonAction::Url(self.text("buttons", url)),
                _ => {
                    self.error(
                        Code::BadReference,
                        "buttons",
                        format!(
                            "button \"{}\" needs exactly one of `payload` or `url`",
                            button.title
                        ),
                    );
                    continue;
                }
            };
            compiled.push(CompiledButton { title, action });
        }
        compiled
    }

    // ---- nodes -------------------------------------------------------------------------------

    /// A message node's tag, refused: none is left that a bot's own message may carry.
    fn message_tag(&mut self, tag: crate::model::MessageTag) -> Option<crate::model::MessageTag> {
        use crate::model::{MessageTag, TAGS_RETIRED_ON};
        let why = match tag {
            MessageTag::HumanAgent => "`tag: HUMAN_AGENT` is only for a person's reply (the \
                engine tags an operator's messages itself, within 7 days of the user's last \
                message); a bot's message may not carry it"
                .to_string(),
            retired => format!(
                "message tag `{}` was retired by Meta on {TAGS_RETIRED_ON}: Messenger refuses \
                 sends with it (Graph error 100). Outside the 24-hour window a bot can no longer \
                 message a user; inside it, leave the tag out (a timer's message goes out as \
                 `UPDATE`)",
                retired.as_str()
            ),
        };
        self.error(Code::RetiredTag, "tag", why);
        None
    }

    fn node_op(&mut self, id: &str, node: &Node) -> Op {
        let kind = node.kind();
        match node {
            Node::Message(m) => {
                if m.text.as_slice().is_empty() {
                    self.error(
                        Code::Shape,
                        "text",
                        "`text` is an empty list; give at least one text".to_string(),
                    );
                }
                let limit = if m.buttons.is_empty() {
                    MAX_TEXT_CHARS
                } else {
                    MAX_BUTTON_TEXT_CHARS
                };
                let texts = m
                    .text
                    .as_slice()
                    .iter()
                    .map(|t| {
                        self.check_text_len("text", t, limit, "the text");
                        let before = self.diagnostics.len();
                        let text = self.text("text", t);
                        // Only about texts that are otherwise sound.
                        if self.diagnostics.len() == before
                            && m.fallback.is_none()
                            && template::may_render_empty(t)
                        {
                            let d = Diagnostic::warning(
                                Code::MayRenderEmpty,
                                format!(
                                    "`{}` renders empty when its variables are, and an empty \
                                     message is left out",
                                    t.trim()
                                ),
                            )
                            .at_node(self.node.clone())
                            .at(self.field_pos("text"))
                            .help("add `fallback:` with what to say then");
                            self.diagnostics.push(d);
                        }
                        text
                    })
                    .collect();
                let fallback = m.fallback.as_ref().map(|f| {
                    self.check_text_len("fallback", f, limit, "the fallback");
                    self.text("fallback", f)
                });
                Op::Message {
                    texts,
                    quick_replies: self.quick_replies(&m.quick_replies, &[]),
                    buttons: self.buttons(&m.buttons),
                    typing_ms: m.typing.map(|d| d.as_millis()),
                    tag: m.tag.and_then(|tag| self.message_tag(tag)),
                    fallback,
                    next: self.required("next", kind, m.next.as_ref()),
                }
            }
            Node::Ask(a) => {
                self.check_text_len("prompt", &a.prompt, MAX_TEXT_CHARS, "the prompt");
                let prompt = self.text("prompt", &a.prompt);
                let position = self.field_pos("store");
                self.check_identifier(&a.store, position);
                let check = self.check(&a.validate);
                let choices = match &a.validate {
                    Validation::Choice { choices } => choices.as_slice(),
                    _ => &[],
                };
                let quick_replies = self.quick_replies(&a.quick_replies, choices);
                let reprompt = a.reprompt.as_ref().map(|r| {
                    self.check_text_len("reprompt", r, MAX_TEXT_CHARS, "the reprompt");
                    self.text("reprompt", r)
                });
                let next = self.required("next", kind, a.next.as_ref());
                let invalid = a
                    .invalid
                    .as_ref()
                    .map(|target| self.edge("invalid", target));
                let timeout = a
                    .timeout
                    .as_ref()
                    .map(|t| (t.after.as_millis(), self.edge("timeout", &t.next)));
                Op::Ask {
                    prompt,
                    check,
                    store: a.store.clone(),
                    quick_replies,
                    reprompt,
                    retries: a.retries,
                    next,
                    invalid,
                    timeout,
                }
            }
            Node::Condition(c) => Op::Condition {
                condition: self
                    .expr("if", &c.condition, &[])
                    .unwrap_or_else(placeholder_expr),
                then: self.edge("then", &c.then),
                otherwise: self.edge("else", &c.otherwise),
            },
            Node::Switch(s) => {
                let cases = s
                    .cases
                    .iter()
                    .map(|case| {
                        let expr = self
                            .expr("cases", &case.when, &[])
                            .unwrap_or_else(placeholder_expr);
                        (expr, self.edge("cases", &case.next))
                    })
                    .collect();
                Op::Switch {
                    cases,
                    default: self.edge("default", &s.default),
                }
            }
            Node::Set(s) => {
                let mut assign = Vec::new();
                for (name, value) in &s.assign {
                    let position = self
                        .parsed
                        .positions
                        .get(&["nodes", id, "assign", name])
                        .or(self.field_pos("assign"));
                    self.check_identifier(name, position);
                    let input = match value {
                        serde_json::Value::String(source) => self
                            .expr("assign", source, &[])
                            .map(Input::Expr)
                            .unwrap_or(Input::Literal(serde_json::Value::Null)),
                        other => Input::Literal(other.clone()),
                    };
                    assign.push((name.clone(), input));
                }
                Op::Set {
                    assign,
                    next: self.required("next", kind, s.next.as_ref()),
                }
            }
            Node::Jump(j) => match (&j.to, &j.flow) {
                (Some(to), None) => Op::Jump(Goto::Node(self.edge("to", to))),
                (to, Some(flow)) => {
                    let position = self.field_pos("flow");
                    self.check_flow(flow, position);
                    if let (Some(to), Some(nodes)) = (to, self.info.nodes.get(flow)) {
                        if !nodes.contains(to) {
                            self.error(
                                Code::UnknownNode,
                                "to",
                                format!("`to` leads to unknown node `{to}` of flow `{flow}`"),
                            );
                        }
                        self.external_entries.push((flow.clone(), to.clone()));
                    }
                    Op::Jump(Goto::Flow {
                        flow: flow.clone(),
                        node: to.clone(),
                    })
                }
                (None, None) => {
                    let position = self.parsed.positions.node(id);
                    let d = Diagnostic::error(
                        Code::DeadEnd,
                        format!("`jump` node `{id}` has neither `to` nor `flow`"),
                    )
                    .at_node(id)
                    .at(position);
                    self.diagnostics.push(d);
                    Op::Jump(Goto::Node(BROKEN))
                }
            },
            Node::Call(c) => {
                let position = self.field_pos("flow");
                self.check_flow(&c.flow, position);
                Op::Call {
                    flow: c.flow.clone(),
                    next: self.required("next", kind, c.next.as_ref()),
                }
            }
            Node::Plugin(p) => self.plugin(kind, p),
            Node::Wait(w) => {
                let next = self.required("next", kind, w.next.as_ref());
                let interrupted = match &w.interrupted {
                    Some(target) => self.edge("interrupted", target),
                    None => next,
                };
                Op::Wait {
                    millis: w.duration.as_millis(),
                    cancel_on_message: w.cancel_on_message,
                    next,
                    interrupted,
                }
            }
            Node::Handoff(h) => Op::Handoff {
                text: h.text.as_ref().map(|t| {
                    self.check_text_len("text", t, MAX_TEXT_CHARS, "the text");
                    self.text("text", t)
                }),
                reason: h.reason.as_ref().map(|r| self.text("reason", r)),
                next: self.required("next", kind, h.next.as_ref()),
            },
            Node::End(e) => Op::End {
                text: e.text.as_ref().map(|t| {
                    self.check_text_len("text", t, MAX_TEXT_CHARS, "the text");
                    self.text("text", t)
                }),
            },
        }
    }

    fn plugin(&mut self, kind: &str, p: &model::PluginNode) -> Op {
        if !ACTION_NAME.is_match(&p.action) {
            self.error(
                Code::BadReference,
                "action",
                format!(
                    "`{}` is not an action name; write `plugin.action`, e.g. `sheets.lookup`",
                    p.action
                ),
            );
        }
        let known = self
            .catalog
            .map(|catalog| (catalog, catalog.get(&p.action)));
        if let Some((catalog, None)) = known {
            let mut message = format!("no installed plugin provides action `{}`", p.action);
            if let Some(best) = did_you_mean(&p.action, catalog.actions.keys().map(String::as_str))
            {
                message.push_str(&format!("; did you mean `{best}`?"));
            }
            self.error(Code::UnknownAction, "action", message);
        }
        if let Some((_, Some(action))) = known
            && !p.on.is_empty()
            && !p.on.contains_key("ok")
        {
            let unhandled: Vec<String> = action
                .outcomes
                .iter()
                .filter(|o| !p.on.contains_key(*o))
                .map(|o| format!("`{o}`"))
                .collect();
            if !unhandled.is_empty() {
                self.error(
                    Code::DeadEnd,
                    "on",
                    format!(
                        "`{}` may produce {} with no edge here, and there is no `ok` edge to fall back on",
                        p.action,
                        unhandled.join(", ")
                    ),
                );
            }
        }
        if let Some((_, Some(action))) = known
            && let Some(schema) = &action.input_schema
        {
            for problem in crate::input_check::check(schema, &p.input) {
                self.error(Code::BadInput, "input", problem);
            }
        }
        if let Some((_, Some(action))) = known {
            for outcome in p.on.keys() {
                if !STANDARD_OUTCOMES.contains(&outcome.as_str())
                    && !action.outcomes.contains(outcome)
                {
                    let mut possible: Vec<&str> = STANDARD_OUTCOMES.to_vec();
                    possible.extend(action.outcomes.iter().map(String::as_str));
                    self.error(
                        Code::UnknownOutcome,
                        "on",
                        format!(
                            "action `{}` never produces outcome `{outcome}`; it produces {}",
                            p.action,
                            possible.join(", ")
                        ),
                    );
                }
            }
        }
        if let Some(save) = &p.save {
            let position = self.field_pos("save");
            self.check_identifier(save, position);
        }
        let input = self.input("input", &p.input);
        let mut outputs = Vec::new();
        for (name, source) in &p.outputs {
            let position = self.field_pos("outputs");
            self.check_identifier(name, position);
            if let Some(expr) = self.expr("outputs", source, &["output"]) {
                outputs.push((name.clone(), expr));
            }
        }
        if p.on.is_empty() {
            let position = self.parsed.positions.node(&self.node);
            let d = Diagnostic::error(
                Code::DeadEnd,
                format!(
                    "`{kind}` node `{}` has no outcome edges under `on`",
                    self.node
                ),
            )
            .at_node(self.node.clone())
            .at(position)
            .help("add at least `on: { ok: <node>, error: <node> }`");
            self.diagnostics.push(d);
        } else if !p.on.contains_key("error") {
            let d = Diagnostic::warning(
                Code::DeadEnd,
                format!("plugin node `{}` has no `error` edge: a failed call leaves the conversation failed", self.node),
            )
            .at_node(self.node.clone())
            .at(self.field_pos("on"));
            self.diagnostics.push(d);
        }
        let on =
            p.on.iter()
                .map(|(outcome, target)| (outcome.clone(), self.edge("on", target)))
                .collect();
        Op::Plugin {
            action: p.action.clone(),
            input,
            save: p.save.clone(),
            outputs,
            on,
            retry: p.retry.clone(),
        }
    }

    fn check(&mut self, validation: &Validation) -> Check {
        let bad =
            |this: &mut Self, message: String| this.error(Code::BadValidation, "validate", message);
        match validation {
            Validation::Text {
                min_length,
                max_length,
            } => {
                if let (Some(min), Some(max)) = (min_length, max_length)
                    && min > max
                {
                    bad(
                        self,
                        format!("`min_length` ({min}) is above `max_length` ({max})"),
                    );
                }
                Check::Text {
                    min: *min_length,
                    max: *max_length,
                }
            }
            Validation::Number { min, max, integer } => {
                if let (Some(lo), Some(hi)) = (min, max)
                    && lo > hi
                {
                    bad(self, format!("`min` ({lo}) is above `max` ({hi})"));
                }
                Check::Number {
                    min: *min,
                    max: *max,
                    integer: *integer,
                }
            }
            Validation::Email => Check::Email,
            Validation::Image => Check::Attachment(&["image"]),
            Validation::File => Check::Attachment(&["file", "image", "video", "audio"]),
            Validation::Phone => Check::Phone,
            Validation::Choice { choices } => {
                if choices.is_empty() {
                    bad(
                        self,
                        "a `choice` validation needs at least one choice".to_string(),
                    );
                }
                let mut seen = HashSet::new();
                for choice in choices {
                    if !seen.insert(choice.value().to_lowercase()) {
                        bad(
                            self,
                            format!("choice value `{}` appears twice", choice.value()),
                        );
                    }
                }
                Check::Choice(
                    choices
                        .iter()
                        .map(|c| (c.title.clone(), c.value().to_string()))
                        .collect(),
                )
            }
            Validation::Regex { pattern } => {
                match RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .size_limit(1 << 20)
                    .build()
                {
                    Ok(regex) => Check::Regex(regex),
                    Err(err) => {
                        bad(
                            self,
                            format!("invalid regular expression `{pattern}`: {err}"),
                        );
                        Check::Text {
                            min: None,
                            max: None,
                        }
                    }
                }
            }
        }
    }
}

fn placeholder_expr() -> Expr {
    Expr::compile("none").expect("`none` is a valid expression")
}

/// `"{{ expr }}"` with nothing around it: the expression inside.
fn single_expression(source: &str) -> Option<&str> {
    let inner = source.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%"))
        .then_some(inner.trim())
}

/// Lower case, surrounding whitespace and punctuation removed: "Stop!" and "stop" match.
pub fn normalize_keyword(text: &str) -> String {
    text.trim()
        .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
        .to_lowercase()
}

impl Diagnostic {
    pub(crate) fn with_file(mut self, file: &str) -> Self {
        if self.file.is_none() {
            self.file = Some(file.to_string());
        }
        self
    }
}
