//! A compiled flow: nodes resolved to indices, templates and expressions compiled, validations
//! built. This is what the state machine runs; it is immutable and shared between conversations.

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;

use crate::model::{Flow, RetryPolicy};
use crate::template::{Expr, Templates, Text};

/// The index of a node in its [`CompiledFlow`].
pub type NodeIx = usize;

/// A set of compiled flows that may refer to each other (jumps, calls, intents).
#[derive(Debug, Clone, Default)]
pub struct FlowSet {
    flows: HashMap<String, Arc<CompiledFlow>>,
    order: Vec<String>,
}

impl FlowSet {
    /// Adds (or replaces) a flow.
    pub fn insert(&mut self, flow: Arc<CompiledFlow>) {
        if !self.flows.contains_key(&flow.id) {
            self.order.push(flow.id.clone());
        }
        self.flows.insert(flow.id.clone(), flow);
    }

    /// The flow with id `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<CompiledFlow>> {
        self.flows.get(id)
    }

    /// The profile fields any of the flows reads (see [`CompiledFlow::profile_fields`]).
    pub fn profile_fields(&self) -> Vec<String> {
        let mut fields: std::collections::BTreeSet<&String> = Default::default();
        for flow in self.flows.values() {
            fields.extend(&flow.profile_fields);
        }
        fields.into_iter().cloned().collect()
    }

    /// Whether any of the flows reads a profile field.
    pub fn reads_profile(&self) -> bool {
        self.flows
            .values()
            .any(|flow| !flow.profile_fields.is_empty())
    }

    /// The flows in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<CompiledFlow>> {
        self.order.iter().filter_map(|id| self.flows.get(id))
    }

    /// How many flows the set holds.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// One compiled flow.
#[derive(Debug)]
pub struct CompiledFlow {
    /// The flow's id.
    pub id: String,
    /// The flow as written.
    pub source: Flow,
    /// The file it came from.
    pub file: String,
    /// The start node.
    pub start: NodeIx,
    /// The nodes, in file order.
    pub nodes: Vec<CompiledNode>,
    /// The global intents declared by this flow.
    pub intents: Vec<CompiledIntent>,
    /// Default values of the declared variables.
    pub defaults: Vec<(String, serde_json::Value)>,
    pub(crate) index: HashMap<String, NodeIx>,
    pub(crate) templates: Templates,
    /// The fields of the user's profile its templates and expressions read (`first_name` for
    /// `{{ user.first_name }}`): what a channel is asked for, and nothing more.
    pub profile_fields: std::collections::BTreeSet<String>,
}

impl CompiledFlow {
    /// The index of the node with id `id`.
    pub fn node_index(&self, id: &str) -> Option<NodeIx> {
        self.index.get(id).copied()
    }

    /// The node at `ix`.
    pub fn node(&self, ix: NodeIx) -> &CompiledNode {
        &self.nodes[ix]
    }
}

/// A compiled node.
#[derive(Debug)]
pub struct CompiledNode {
    /// The node's id.
    pub id: String,
    /// What it does.
    pub op: Op,
}

/// Where control goes next.
#[derive(Debug, Clone)]
pub enum Goto {
    /// A node of the same flow.
    Node(NodeIx),
    /// Another flow, at `node` or at its start.
    Flow {
        /// The flow id.
        flow: String,
        /// The node id, or the flow's start when absent.
        node: Option<String>,
    },
}

/// A quick reply with its template parts.
#[derive(Debug)]
pub struct CompiledQuickReply {
    /// The label.
    pub title: Text,
    /// The payload sent back.
    pub payload: Text,
}

/// A button.
#[derive(Debug)]
pub struct CompiledButton {
    /// The label.
    pub title: Text,
    /// What it does.
    pub action: CompiledButtonAction,
}

/// What a button does.
#[derive(Debug)]
pub enum CompiledButtonAction {
    /// Sends a payload back.
    Postback(Text),
    /// Opens a URL.
    Url(Text),
}

/// A plugin input, a JSON tree whose strings are templates or single expressions.
#[derive(Debug)]
pub enum Input {
    /// A value taken as it is.
    Literal(serde_json::Value),
    /// A string template.
    Text(Text),
    /// `"{{ expr }}"` alone: the expression's value, with its type.
    Expr(Expr),
    /// A list.
    List(Vec<Input>),
    /// A map.
    Map(Vec<(String, Input)>),
}

/// A compiled `ask` validation.
#[derive(Debug)]
pub enum Check {
    /// Text with optional length bounds.
    Text {
        /// Fewest characters.
        min: Option<usize>,
        /// Most characters.
        max: Option<usize>,
    },
    /// A number.
    Number {
        /// Smallest accepted.
        min: Option<f64>,
        /// Largest accepted.
        max: Option<f64>,
        /// Whole numbers only.
        integer: bool,
    },
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// One of the choices: (title, value).
    Choice(Vec<(String, String)>),
    /// A whole-reply regular expression.
    Regex(Regex),
    /// An attachment of one of these kinds (`image`; `file`, `image`, `video`, `audio`).
    Attachment(&'static [&'static str]),
}

/// A compiled global intent.
#[derive(Debug)]
pub struct CompiledIntent {
    /// The intent's name.
    pub name: String,
    /// Normalized keywords.
    pub keywords: Vec<String>,
    /// Exact payloads.
    pub payloads: Vec<String>,
    /// Where it leads.
    pub target: IntentAction,
}

/// What an intent does.
#[derive(Debug)]
pub enum IntentAction {
    /// Go to a node of the declaring flow.
    Goto(NodeIx),
    /// Leave for another flow.
    Flow(String),
    /// Call a subflow and come back.
    Call(String),
}

/// What a node does, compiled.
#[derive(Debug)]
pub enum Op {
    /// `message`.
    Message {
        /// One outbound message each.
        texts: Vec<Text>,
        /// Under the last message.
        quick_replies: Vec<CompiledQuickReply>,
        /// Under the last message.
        buttons: Vec<CompiledButton>,
        /// Typing indicator before each message, in milliseconds.
        typing_ms: Option<u64>,
        /// The message tag for sends after the window for replies closed.
        tag: Option<crate::model::MessageTag>,
        /// Said instead of a text that renders empty.
        fallback: Option<Text>,
        /// The next node.
        next: NodeIx,
    },
    /// `ask`.
    Ask {
        /// The question.
        prompt: Text,
        /// How replies are checked.
        check: Check,
        /// Where the answer goes.
        store: String,
        /// Offered under the prompt (choices included).
        quick_replies: Vec<CompiledQuickReply>,
        /// Said on an invalid reply.
        reprompt: Option<Text>,
        /// Invalid replies answered before `invalid`.
        retries: u32,
        /// After a valid reply.
        next: NodeIx,
        /// After too many invalid replies.
        invalid: Option<NodeIx>,
        /// (milliseconds, node) when nobody answers.
        timeout: Option<(u64, NodeIx)>,
    },
    /// `condition`.
    Condition {
        /// The test.
        condition: Expr,
        /// When true.
        then: NodeIx,
        /// When false.
        otherwise: NodeIx,
    },
    /// `switch`.
    Switch {
        /// Tried in order.
        cases: Vec<(Expr, NodeIx)>,
        /// When none matches.
        default: NodeIx,
    },
    /// `set`.
    Set {
        /// Variable and value.
        assign: Vec<(String, Input)>,
        /// The next node.
        next: NodeIx,
    },
    /// `jump`.
    Jump(Goto),
    /// `call`.
    Call {
        /// The subflow.
        flow: String,
        /// Where to continue after it.
        next: NodeIx,
    },
    /// `plugin`.
    Plugin {
        /// `plugin.action`.
        action: String,
        /// The input tree.
        input: Input,
        /// Variable for the whole output.
        save: Option<String>,
        /// Variables bound to expressions over `output`.
        outputs: Vec<(String, Expr)>,
        /// Outcome edges.
        on: Vec<(String, NodeIx)>,
        /// Retry policy, for the runtime.
        retry: RetryPolicy,
    },
    /// `wait`.
    Wait {
        /// Delay in milliseconds.
        millis: u64,
        /// Whether a user message cancels the wait.
        cancel_on_message: bool,
        /// After the delay.
        next: NodeIx,
        /// After a cancelling message.
        interrupted: NodeIx,
    },
    /// `handoff`.
    Handoff {
        /// Told to the user.
        text: Option<Text>,
        /// Told to the operator.
        reason: Option<Text>,
        /// After the operator resumes the bot.
        next: NodeIx,
    },
    /// `end`.
    End {
        /// A last message.
        text: Option<Text>,
    },
}

impl Op {
    /// Whether the node stops the turn to wait for something (a reply, a result, a timer, an
    /// operator) or ends it. Cycles made only of other nodes would never stop.
    pub fn waits(&self) -> bool {
        matches!(
            self,
            Op::Ask { .. }
                | Op::Plugin { .. }
                | Op::Wait { .. }
                | Op::Handoff { .. }
                | Op::End { .. }
                | Op::Call { .. }
        )
    }
}
