//! Whole-graph checks with petgraph: reachability and cycles that never wait for the user.

use petgraph::algo::tarjan_scc;
use petgraph::graph::NodeIndex;
use petgraph::visit::{Dfs, EdgeFiltered, EdgeRef};

use crate::compiled::CompiledFlow;
use crate::diagnostic::{Code, Diagnostic};
use crate::graph::FlowGraph;
use crate::model::Node;
use crate::source::ParsedFlow;

/// Checks the graph of `parsed`. `entries` are nodes that other flows jump to directly.
pub(crate) fn graph(
    parsed: &ParsedFlow,
    _compiled: &Option<CompiledFlow>,
    entries: &[&str],
) -> Vec<Diagnostic> {
    let flow = &parsed.flow;
    let g = FlowGraph::new(flow);
    let mut diagnostics = Vec::new();

    // Reachability from the start, the intents' targets and the entries used by other flows.
    let roots = std::iter::once(flow.start.as_str())
        .chain(flow.intents.values().filter_map(|i| i.goto.as_deref()))
        .chain(entries.iter().copied())
        .filter_map(|id| g.index.get(id).copied());
    let mut reached = vec![false; g.graph.node_count()];
    for root in roots {
        let mut dfs = Dfs::new(&g.graph, root);
        while let Some(ix) = dfs.next(&g.graph) {
            reached[ix.index()] = true;
        }
    }
    // Nodes that did not parse cut edges; reporting their successors would be noise.
    if parsed.broken_nodes.is_empty() && g.index.contains_key(flow.start.as_str()) {
        for (ix, id) in g.graph.node_indices().map(|ix| (ix, g.graph[ix])) {
            if !reached[ix.index()] {
                diagnostics.push(
                    Diagnostic::error(
                        Code::Unreachable,
                        format!("node `{id}` can never be reached"),
                    )
                    .at_node(id)
                    .at(parsed.positions.node(id))
                    .help("lead to it from another node or an intent, or remove it"),
                );
            }
        }
    }

    // Cycles made only of nodes that never wait would run forever within one turn.
    let waits = |ix: NodeIndex| {
        flow.nodes.get(g.graph[ix]).is_none_or(|node| {
            matches!(
                node,
                Node::Ask(_)
                    | Node::Plugin(_)
                    | Node::Wait(_)
                    | Node::Handoff(_)
                    | Node::End(_)
                    | Node::Call(_)
            )
        })
    };
    let busy = EdgeFiltered::from_fn(&g.graph, |edge| !waits(edge.source()));
    for component in tarjan_scc(&busy) {
        let is_cycle = component.len() > 1 || g.graph.contains_edge(component[0], component[0]);
        if !is_cycle {
            continue;
        }
        let mut members: Vec<NodeIndex> = component;
        members.sort();
        let names: Vec<&str> = members.iter().map(|ix| g.graph[*ix]).collect();
        let first = names[0];
        diagnostics.push(
            Diagnostic::error(
                Code::BusyCycle,
                format!("nodes {} form a cycle that never waits for the user; it would loop forever in one turn", 
                    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
            )
            .at_node(first)
            .at(parsed.positions.node(first))
            .help("put an `ask`, `wait` or `plugin` node on the cycle, or break it"),
        );
    }
    diagnostics
}
