//! A flow as a petgraph graph: the edges every node kind has, and drawings in Mermaid and DOT.

use std::collections::HashMap;
use std::fmt::Write;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::model::{Flow, Node};

/// Where an edge leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// A node of the same flow.
    Node(&'a str),
    /// Another flow (at a node, or its start): a jump or a call.
    Flow(&'a str, Option<&'a str>),
}

/// The labelled edges out of a node, in a stable order.
pub fn edges(node: &Node) -> Vec<(String, Target<'_>)> {
    fn push<'n>(out: &mut Vec<(String, Target<'n>)>, label: &str, target: Option<&'n String>) {
        if let Some(t) = target {
            out.push((label.to_string(), Target::Node(t.as_str())));
        }
    }
    let mut out = Vec::new();
    let o = &mut out;
    match node {
        Node::Message(m) => push(o, "next", m.next.as_ref()),
        Node::Ask(a) => {
            push(o, "next", a.next.as_ref());
            push(o, "invalid", a.invalid.as_ref());
            push(o, "timeout", a.timeout.as_ref().map(|t| &t.next));
        }
        Node::Condition(c) => {
            push(o, "then", Some(&c.then));
            push(o, "else", Some(&c.otherwise));
        }
        Node::Switch(s) => {
            for case in &s.cases {
                push(o, &case.when, Some(&case.next));
            }
            push(o, "default", Some(&s.default));
        }
        Node::Set(s) => push(o, "next", s.next.as_ref()),
        Node::Jump(j) => match &j.flow {
            Some(flow) => o.push(("jump".to_string(), Target::Flow(flow, j.to.as_deref()))),
            None => push(o, "jump", j.to.as_ref()),
        },
        Node::Call(c) => {
            o.push(("call".to_string(), Target::Flow(&c.flow, None)));
            push(o, "next", c.next.as_ref());
        }
        Node::Plugin(p) => {
            for (outcome, target) in &p.on {
                push(o, outcome, Some(target));
            }
        }
        Node::Wait(w) => {
            push(o, "next", w.next.as_ref());
            push(o, "interrupted", w.interrupted.as_ref());
        }
        Node::Handoff(h) => push(o, "resumed", h.next.as_ref()),
        Node::End(_) => {}
    }
    out
}

/// A flow's nodes and in-flow edges as a directed graph (edges to unknown nodes are left out).
#[derive(Debug)]
pub struct FlowGraph<'a> {
    /// Node weights are node ids; edge weights are labels.
    pub graph: DiGraph<&'a str, String>,
    /// Graph index of each node id.
    pub index: HashMap<&'a str, NodeIndex>,
}

impl<'a> FlowGraph<'a> {
    /// Builds the graph of `flow`.
    pub fn new(flow: &'a Flow) -> Self {
        let mut graph = DiGraph::with_capacity(flow.nodes.len(), flow.nodes.len() * 2);
        let mut index = HashMap::with_capacity(flow.nodes.len());
        for id in flow.nodes.keys() {
            index.insert(id.as_str(), graph.add_node(id.as_str()));
        }
        for (id, node) in &flow.nodes {
            for (label, target) in edges(node) {
                if let Target::Node(target) = target
                    && let Some(to) = index.get(target)
                {
                    graph.add_edge(index[id.as_str()], *to, label);
                }
            }
        }
        FlowGraph { graph, index }
    }
}

fn node_label(id: &str, node: &Node) -> String {
    format!("{id}\n({})", node.kind())
}

fn escape(text: &str, quote: char) -> String {
    text.replace('\\', "\\\\")
        .replace(quote, if quote == '"' { "#quot;" } else { "\\'" })
}

/// The flow as a Mermaid flowchart. Node ids are kept as written, so a caller can style one
/// (the playground highlights the current node) with `style <id> ...`.
pub fn mermaid(flow: &Flow) -> String {
    let mut out = String::from("flowchart TD\n");
    let id = |node: &str| {
        format!(
            "n_{}",
            node.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_")
        )
    };
    let _ = writeln!(out, "    start((start)) --> {}", id(&flow.start));
    for (name, node) in &flow.nodes {
        let label = escape(&node_label(name, node), '"').replace('\n', "<br/>");
        let shape = match node {
            Node::Condition(_) | Node::Switch(_) => format!("{{\"{label}\"}}"),
            Node::Ask(_) | Node::Wait(_) | Node::Handoff(_) => format!("[/\"{label}\"/]"),
            Node::End(_) => format!("([\"{label}\"])"),
            Node::Plugin(_) => format!("[[\"{label}\"]]"),
            _ => format!("[\"{label}\"]"),
        };
        let _ = writeln!(out, "    {}{shape}", id(name));
    }
    for (name, node) in &flow.nodes {
        for (label, target) in edges(node) {
            let label = escape(&label, '"');
            match target {
                Target::Node(to) => {
                    let _ = writeln!(out, "    {} -->|\"{label}\"| {}", id(name), id(to));
                }
                Target::Flow(flow, at) => {
                    let external = format!(
                        "flow_{}",
                        flow.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                    );
                    let text = match at {
                        Some(at) => format!("{flow}:{at}"),
                        None => flow.to_string(),
                    };
                    let _ = writeln!(out, "    {external}>\"flow {}\"]", escape(&text, '"'));
                    let _ = writeln!(out, "    {} -.->|\"{label}\"| {external}", id(name));
                }
            }
        }
    }
    for (name, intent) in &flow.intents {
        if let Some(goto) = &intent.goto {
            let _ = writeln!(
                out,
                "    intent_{0}([\"intent: {0}\"]) -.-> {1}",
                escape(name, '"'),
                id(goto)
            );
        }
    }
    out
}

/// The flow as a Graphviz DOT digraph.
pub fn dot(flow: &Flow) -> String {
    let mut out = String::new();
    let q = |text: &str| {
        format!(
            "\"{}\"",
            text.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        )
    };
    let _ = writeln!(out, "digraph {} {{", q(&flow.id));
    let _ = writeln!(
        out,
        "    rankdir=TB;\n    node [shape=box, fontname=\"sans-serif\"];"
    );
    let _ = writeln!(
        out,
        "    \"__start\" [shape=circle, label=\"start\"];\n    \"__start\" -> {};",
        q(&flow.start)
    );
    for (name, node) in &flow.nodes {
        let shape = match node {
            Node::Condition(_) | Node::Switch(_) => "diamond",
            Node::Ask(_) | Node::Wait(_) | Node::Handoff(_) => "parallelogram",
            Node::End(_) => "doublecircle",
            Node::Plugin(_) => "component",
            _ => "box",
        };
        let _ = writeln!(
            out,
            "    {} [label={}, shape={shape}];",
            q(name),
            q(&node_label(name, node))
        );
    }
    for (name, node) in &flow.nodes {
        for (label, target) in edges(node) {
            match target {
                Target::Node(to) => {
                    let _ = writeln!(out, "    {} -> {} [label={}];", q(name), q(to), q(&label));
                }
                Target::Flow(flow, at) => {
                    let text = format!(
                        "flow {}{}",
                        flow,
                        at.map(|a| format!(":{a}")).unwrap_or_default()
                    );
                    let _ = writeln!(out, "    {} [shape=cds];", q(&text));
                    let _ = writeln!(
                        out,
                        "    {} -> {} [label={}, style=dashed];",
                        q(name),
                        q(&text),
                        q(&label)
                    );
                }
            }
        }
    }
    out.push_str("}\n");
    out
}
