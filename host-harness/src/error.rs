//! Host-side failures, distinct from the connector's own errors.

use std::time::Duration;

/// Why the host could not run a connector call to completion.
///
/// These are the embedding platform's problems (a broken component, a
/// misbehaving guest, a budget running out), as opposed to
/// [`ConnectorError`](crate::ConnectorError)s, which the connector reports
/// about the console and the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The component could not be compiled or does not match the contract.
    #[error("the connector component could not be loaded: {0}")]
    Load(String),
    /// The engine could not be configured.
    #[error("the runtime could not be configured: {0}")]
    Config(String),
    /// The call's policy cannot let any call succeed (a zero timeout,
    /// deadline or CPU budget); nothing was run or sent.
    #[error("the call policy is unusable: {0}")]
    InvalidPolicy(String),
    /// Creating the per-call instance failed.
    #[error("the connector could not be instantiated: {0}")]
    Instantiate(String),
    /// The call exceeded its wall-clock deadline and was stopped.
    #[error("the connector call exceeded its deadline of {0:?} and was stopped")]
    Deadline(Duration),
    /// The guest trapped (panic, out-of-bounds access, stack exhausted, ...).
    #[error("the connector crashed: {0}")]
    Trap(String),
    /// The guest tried to grow its memory past the call's cap and was stopped.
    #[error("the connector exceeded its memory limit of {0} bytes and was stopped")]
    MemoryLimit(usize),
    /// The guest computed for longer than the call's CPU budget and was stopped.
    #[error("the connector used up its CPU budget of {0:?} and was stopped")]
    CpuBudget(Duration),
    /// No call slot freed up within the policy's queue timeout.
    #[error("no call slot became free within {0:?}; the host is at its concurrency limit")]
    QueueTimeout(Duration),
    /// The call's tenant already had as many calls running as one tenant
    /// may (`RuntimeConfig::max_concurrent_calls_per_tenant`), and none
    /// finished within the policy's queue timeout.
    #[error(
        "this tenant already has {running} calls running, the most one tenant may, and none \
         finished within {waited:?}; retry when they have"
    )]
    TenantLimit {
        /// The per-tenant limit.
        running: usize,
        /// How long the call waited.
        waited: Duration,
    },
    /// The guest tried to send more requests than the call allows; the
    /// excess was refused and the call's result discarded.
    #[error("the connector tried to send more than {0} requests in one call")]
    TooManyRequests(u32),
    /// The guest sent a request the egress policy refused (a domain outside
    /// the allowed suffixes, or a name resolving to a loopback, private,
    /// link-local or metadata address) and did not report it as
    /// `egress-denied` itself; its result is discarded.
    #[error(
        "the connector tried to reach {0}, which this host's egress policy does not allow; \
         allow the domain if it is a legitimate console"
    )]
    EgressDenied(String),
    /// The guest made the host hold more than a call allows (too many live
    /// handles, an oversized header map, or too many random bytes at once:
    /// host memory that the linear-memory cap does not see) and was stopped.
    #[error("the connector held more host resources than a call allows ({0}) and was stopped")]
    HostResources(String),
    /// The guest tried to send a request body larger than the call's cap;
    /// the request was cut off and the call's result discarded.
    #[error("the connector tried to send a request body over the {0}-byte cap")]
    RequestTooLarge(u64),
}

impl HostError {
    /// The error's free text, if it carries any: where a guest's choices
    /// (a destination, a trap cause) can appear, so the host redacts and
    /// bounds it before handing the error on.
    pub(crate) fn text_mut(&mut self) -> Option<&mut String> {
        match self {
            HostError::Load(m)
            | HostError::Config(m)
            | HostError::InvalidPolicy(m)
            | HostError::Instantiate(m)
            | HostError::Trap(m)
            | HostError::EgressDenied(m)
            | HostError::HostResources(m) => Some(m),
            HostError::Deadline(_)
            | HostError::MemoryLimit(_)
            | HostError::CpuBudget(_)
            | HostError::QueueTimeout(_)
            | HostError::TenantLimit { .. }
            | HostError::TooManyRequests(_)
            | HostError::RequestTooLarge(_) => None,
        }
    }

    /// A short machine-readable name, e.g. `deadline`.
    pub fn kind(&self) -> &'static str {
        match self {
            HostError::Load(_) => "load",
            HostError::Config(_) => "config",
            HostError::InvalidPolicy(_) => "invalid-policy",
            HostError::Instantiate(_) => "instantiate",
            HostError::Deadline(_) => "deadline",
            HostError::Trap(_) => "trap",
            HostError::MemoryLimit(_) => "memory-limit",
            HostError::CpuBudget(_) => "cpu-budget",
            HostError::TooManyRequests(_) => "too-many-requests",
            HostError::QueueTimeout(_) => "queue-timeout",
            HostError::TenantLimit { .. } => "tenant-limit",
            HostError::EgressDenied(_) => "egress-denied",
            HostError::RequestTooLarge(_) => "request-too-large",
            HostError::HostResources(_) => "host-resources",
        }
    }
}
