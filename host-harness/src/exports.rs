//! The connector's exported functions: found once per component, and
//! type-checked only when a call runs one.
//!
//! wasmtime's generated bindings type-check every export of every interface
//! each time an instance is made, although a call runs one of them. For this
//! world that was about 20,000 instructions, 1.4 µs or 15% of an
//! instantiation (callgrind and a loop of 20,000 instantiations). Here a
//! call checks only the function it runs, against the component's own type,
//! so a connector with the wrong signature still fails with a typed error
//! and never runs with mismatched values.

use wasmtime::Store;
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, Instance, Lift, Lower,
};

use crate::error::HostError;
use crate::limits::trap;

/// The interface that holds the actions.
const CONNECTOR: &str = "soar:connector/connector@0.1.0";
/// The interface that holds threat ingestion.
const EVENTS: &str = "soar:connector/events@0.1.0";

/// Where each function the runtime calls sits in a component's exports.
pub(crate) struct Exports {
    pub(crate) describe: ComponentExportIndex,
    pub(crate) validate_connection: ComponentExportIndex,
    pub(crate) get_host: ComponentExportIndex,
    pub(crate) isolate_host: ComponentExportIndex,
    pub(crate) release_host: ComponentExportIndex,
    pub(crate) fetch_threats: ComponentExportIndex,
}

impl Exports {
    /// Finds every function the runtime calls, or names the one missing.
    pub(crate) fn find(component: &Component) -> Result<Exports, HostError> {
        let connector = interface(component, CONNECTOR)?;
        let events = interface(component, EVENTS)?;
        let func = |interface: &(ComponentExportIndex, &str), name: &str| {
            component
                .get_export_index(Some(&interface.0), name)
                .ok_or_else(|| {
                    HostError::Load(format!(
                        "the component does not export `{}#{name}`",
                        interface.1
                    ))
                })
        };
        Ok(Exports {
            describe: func(&connector, "describe")?,
            validate_connection: func(&connector, "validate-connection")?,
            get_host: func(&connector, "get-host")?,
            isolate_host: func(&connector, "isolate-host")?,
            release_host: func(&connector, "release-host")?,
            fetch_threats: func(&events, "fetch-threats")?,
        })
    }
}

fn interface<'a>(
    component: &Component,
    name: &'a str,
) -> Result<(ComponentExportIndex, &'a str), HostError> {
    component
        .get_export_index(None, name)
        .map(|index| (index, name))
        .ok_or_else(|| HostError::Load(format!("the component does not export `{name}`")))
}

/// Runs the export at `export` in `instance` with `params`, after checking
/// that its type is `params -> result`. A component whose function has
/// another type fails with [`HostError::Load`] and runs nothing; a call
/// that fails once running is classified by [`trap`].
pub(crate) async fn invoke<T, P, R>(
    store: &mut Store<T>,
    instance: &Instance,
    export: &ComponentExportIndex,
    params: P,
) -> Result<R, HostError>
where
    T: Send,
    P: ComponentNamedList + Lower + Send + Sync,
    R: Lift + Send + Sync + 'static,
    (R,): ComponentNamedList + Lift,
{
    let func = instance
        .get_typed_func::<P, (R,)>(&mut *store, export)
        .map_err(|e| HostError::Load(format!("an export does not match the contract: {e:#}")))?;
    let (result,) = func.call_async(&mut *store, params).await.map_err(trap)?;
    Ok(result)
}
