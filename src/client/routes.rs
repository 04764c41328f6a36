//! Who is waiting for which server message.
//!
//! Executions, commands and chat steps are matched by the `request_id` the
//! client put on them (executions also by `execution_id` once started, which
//! is how a resumed or followed execution is found). Answers without an id
//! (`agents`, `hello`, a plain `get_execution`) come back in request order, so
//! their waiters are queues.

use std::collections::{HashMap, VecDeque};

use tokio::sync::{mpsc, oneshot};

use super::ClientError;
use crate::protocol::{
    AgentInfo, AgentResponse, ClientMessage, CommandResponse, ExecutionProgress, ExecutionResponse,
    GetExecutionRequest, HelloResponse, LoadAgentCommand, ServerMessage,
};

/// What an execution's owner receives.
pub(crate) enum ExecEvent {
    Progress(ExecutionProgress),
    Completed(ExecutionResponse),
}

type Answer<T> = oneshot::Sender<Result<T, ClientError>>;
type Events<T> = mpsc::UnboundedSender<Result<T, ClientError>>;
/// An execution's `started` (its id) and its later events.
pub(crate) type ExecReceivers = (
    oneshot::Receiver<Result<String, ClientError>>,
    mpsc::UnboundedReceiver<Result<ExecEvent, ClientError>>,
);

struct ExecRoute {
    execution_id: Option<String>,
    /// The highest progress `seq` delivered; a resume asks for what follows it.
    last_seq: u32,
    started: Option<Answer<String>>,
    events: Events<ExecEvent>,
}

/// Every waiter of one client connection.
#[derive(Default)]
pub(crate) struct Routes {
    /// By `request_id` (or, for a follow, a key of the client's own).
    executions: HashMap<String, ExecRoute>,
    /// `execution_id` → key in `executions`.
    by_execution: HashMap<String, String>,
    gets: VecDeque<(String, Answer<ExecutionResponse>)>,
    agents: VecDeque<Answer<Vec<AgentInfo>>>,
    hellos: VecDeque<Answer<HelloResponse>>,
    commands: HashMap<String, Answer<CommandResponse>>,
    /// `Ok(None)` ends a step.
    steps: HashMap<String, Events<Option<AgentResponse>>>,
    /// The chat agent to load again after a reconnect.
    pub chat_agent: Option<String>,
    /// No reconnect is coming: new waiters fail at once.
    closed: bool,
}

impl Routes {
    /// Wait for an execution's `started` and its events; with `follow`, the
    /// execution id and the last `seq` already seen are known.
    pub fn execution(&mut self, key: &str, follow: Option<(&str, u32)>) -> ExecReceivers {
        let (started, started_rx) = oneshot::channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        if self.closed {
            return (started_rx, events_rx);
        }
        let route = ExecRoute {
            execution_id: follow.map(|(id, _)| id.to_owned()),
            last_seq: follow.map_or(0, |(_, seq)| seq),
            started: Some(started),
            events,
        };
        if let Some(id) = &route.execution_id {
            self.by_execution.insert(id.clone(), key.to_owned());
        }
        self.executions.insert(key.to_owned(), route);
        (started_rx, events_rx)
    }

    fn answer<T>(queue: Option<&mut VecDeque<Answer<T>>>) -> oneshot::Receiver<Result<T, ClientError>> {
        let (answer, receiver) = oneshot::channel();
        if let Some(queue) = queue {
            queue.push_back(answer);
        }
        receiver
    }

    /// Wait for the answer to a plain `get_execution`.
    pub fn get(&mut self, execution_id: &str) -> oneshot::Receiver<Result<ExecutionResponse, ClientError>> {
        let (answer, receiver) = oneshot::channel();
        if !self.closed {
            self.gets.push_back((execution_id.to_owned(), answer));
        }
        receiver
    }

    /// Wait for the answer to `list_agents`.
    pub fn agents(&mut self) -> oneshot::Receiver<Result<Vec<AgentInfo>, ClientError>> {
        Routes::answer((!self.closed).then_some(&mut self.agents))
    }

    /// Wait for the answer to `hello`.
    pub fn hello(&mut self) -> oneshot::Receiver<Result<HelloResponse, ClientError>> {
        Routes::answer((!self.closed).then_some(&mut self.hellos))
    }

    /// Wait for a `command_response`.
    pub fn command(&mut self, key: &str) -> oneshot::Receiver<Result<CommandResponse, ClientError>> {
        let (answer, receiver) = oneshot::channel();
        if !self.closed {
            self.commands.insert(key.to_owned(), answer);
        }
        receiver
    }

    /// Receive a chat step's messages.
    pub fn step(&mut self, key: &str) -> mpsc::UnboundedReceiver<Result<Option<AgentResponse>, ClientError>> {
        let (events, receiver) = mpsc::unbounded_channel();
        if !self.closed {
            self.steps.insert(key.to_owned(), events);
        }
        receiver
    }

    fn execution_key(&self, execution_id: Option<&str>, request_id: Option<&str>) -> Option<String> {
        execution_id
            .and_then(|id| self.by_execution.get(id).cloned())
            .or_else(|| {
                request_id
                    .filter(|r| self.executions.contains_key(*r))
                    .map(str::to_owned)
            })
    }

    /// Hand a server message to whoever waits for it; drop it if nobody does.
    pub fn route(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::ExecutionResponse(message) => self.execution_response(message.data),
            ServerMessage::ExecutionProgress(message) => {
                let progress = message.data;
                let key = self.execution_key(Some(&progress.execution_id), progress.request_id.as_deref());
                if let Some(route) = key.and_then(|key| self.executions.get_mut(&key))
                    && progress.seq > route.last_seq
                {
                    route.last_seq = progress.seq;
                    let _ = route.events.send(Ok(ExecEvent::Progress(progress)));
                }
            }
            ServerMessage::Agents(message) => {
                if let Some(answer) = self.agents.pop_front() {
                    let _ = answer.send(Ok(message.data.agents));
                }
            }
            ServerMessage::Hello(message) => {
                if let Some(answer) = self.hellos.pop_front() {
                    let _ = answer.send(Ok(message.data));
                }
            }
            ServerMessage::Error(message) => {
                let error = message.data;
                match error.request_id.clone() {
                    Some(key) => self.fail(&key, ClientError::Server(error)),
                    // Only a plain `get_execution` is answered with an uncorrelated error.
                    None => {
                        if let Some((_, answer)) = self.gets.pop_front() {
                            let _ = answer.send(Err(ClientError::Server(error)));
                        }
                    }
                }
            }
            ServerMessage::CommandResponse(response) => {
                if let Some(answer) = response
                    .request_id
                    .as_ref()
                    .and_then(|key| self.commands.remove(key))
                {
                    let _ = answer.send(Ok(response));
                }
            }
            ServerMessage::AgentResponse(response) => {
                if let Some(step) = response.request_id.as_ref().and_then(|key| self.steps.get(key)) {
                    let _ = step.send(Ok(Some(response)));
                }
            }
            ServerMessage::AgentResponseEnd(end) => {
                if let Some(step) = end.request_id.as_ref().and_then(|key| self.steps.remove(key)) {
                    let _ = step.send(Ok(None));
                }
            }
            ServerMessage::AgentResponseError(error) => {
                if let Some(key) = error.request_id {
                    self.fail(&key, ClientError::Chat(error.message));
                }
            }
            ServerMessage::ServerError(error) => {
                if let Some(key) = error.request_id {
                    self.fail(&key, ClientError::Chat(error.message));
                }
            }
            ServerMessage::AgentResponseStart(_) | ServerMessage::Pong => {}
        }
    }

    fn execution_response(&mut self, response: ExecutionResponse) {
        let Some(key) = self.execution_key(response.execution_id(), response.request_id()) else {
            // A plain `get_execution` answer.
            let id = response.execution_id().unwrap_or_default();
            if let Some(at) = self.gets.iter().position(|(wanted, _)| wanted == id)
                && let Some((_, answer)) = self.gets.remove(at)
            {
                let _ = answer.send(Ok(response));
            }
            return;
        };
        let Some(route) = self.executions.get_mut(&key) else {
            return;
        };
        if let (None, Some(id)) = (&route.execution_id, response.execution_id()) {
            route.execution_id = Some(id.to_owned());
            self.by_execution.insert(id.to_owned(), key.clone());
        }
        if let Some(started) = route.started.take() {
            let id = route.execution_id.clone().unwrap_or_default();
            let _ = started.send(Ok(id));
        }
        if response.is_completed()
            && let Some(route) = self.executions.remove(&key)
        {
            if let Some(id) = &route.execution_id {
                self.by_execution.remove(id);
            }
            let _ = route.events.send(Ok(ExecEvent::Completed(response)));
        }
    }

    /// Fail whatever waits under `key`.
    fn fail(&mut self, key: &str, error: ClientError) {
        if let Some(route) = self.executions.get_mut(key) {
            // An error for a started execution (a late cancel) is not its end.
            if let Some(started) = route.started.take() {
                let _ = started.send(Err(error));
                self.executions.remove(key);
            }
        } else if let Some(answer) = self.commands.remove(key) {
            let _ = answer.send(Err(error));
        } else if let Some(step) = self.steps.remove(key) {
            let _ = step.send(Err(error));
        }
    }

    /// A frame that did not decode: fail its waiter if it names one.
    pub fn malformed(&mut self, text: &str, why: &str) {
        let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let request_id = value
            .get("request_id")
            .or_else(|| value.get("data").and_then(|d| d.get("request_id")))
            .and_then(|r| r.as_str());
        if let Some(key) = request_id {
            let error = ClientError::Malformed(why.to_owned());
            if let Some(route) = self.executions.remove(key) {
                if let Some(id) = &route.execution_id {
                    self.by_execution.remove(id);
                }
                match route.started {
                    Some(started) => drop(started.send(Err(error))),
                    None => drop(route.events.send(Err(error))),
                }
            } else {
                self.fail(key, error);
            }
        }
    }

    /// The socket dropped: fail what cannot be resumed.
    pub fn disconnected(&mut self) {
        fn lost<T>() -> Result<T, ClientError> {
            Err(ClientError::ConnectionLost)
        }
        for (_, answer) in self.gets.drain(..) {
            let _ = answer.send(lost());
        }
        for answer in self.agents.drain(..) {
            let _ = answer.send(lost());
        }
        for answer in self.hellos.drain(..) {
            let _ = answer.send(lost());
        }
        for (_, answer) in self.commands.drain() {
            let _ = answer.send(lost());
        }
        for (_, step) in self.steps.drain() {
            let _ = step.send(lost());
        }
        // An execution not yet started may or may not run: its caller decides.
        self.executions.retain(|_, route| match route.started.take() {
            Some(started) if route.execution_id.is_none() => {
                let _ = started.send(lost());
                false
            }
            started => {
                route.started = started;
                true
            }
        });
    }

    /// What to send on a new connection: follow every execution in flight
    /// from its last seen progress, and load the chat agent again.
    pub fn resume(&self) -> Vec<ClientMessage> {
        let mut messages: Vec<ClientMessage> = self
            .executions
            .values()
            .filter_map(|route| {
                let id = route.execution_id.as_deref()?;
                let request = GetExecutionRequest::new(id).follow(Some(route.last_seq));
                Some(ClientMessage::GetExecution(request))
            })
            .collect();
        if let Some(agent) = &self.chat_agent {
            messages.push(ClientMessage::Command(crate::protocol::ChatCommand::LoadAgent(
                LoadAgentCommand::new(agent.clone()),
            )));
        }
        messages
    }

    /// No reconnect is coming: fail everything, now and later.
    pub fn fail_all(&mut self) {
        self.closed = true;
        self.disconnected();
        self.by_execution.clear();
        for (_, route) in self.executions.drain() {
            let _ = route.events.send(Err(ClientError::ConnectionLost));
        }
    }
}
