//! The fixed tables of supervisord's XML-RPC API: fault codes and names, and every method
//! with its signature and help (what `system.listMethods/methodHelp/methodSignature` answer).

/// supervisord's `xmlrpc.Faults`.
pub mod faults {
    pub const UNKNOWN_METHOD: i64 = 1;
    pub const INCORRECT_PARAMETERS: i64 = 2;
    pub const BAD_ARGUMENTS: i64 = 3;
    pub const SIGNATURE_UNSUPPORTED: i64 = 4;
    pub const SHUTDOWN_STATE: i64 = 6;
    pub const BAD_NAME: i64 = 10;
    pub const BAD_SIGNAL: i64 = 11;
    pub const NO_FILE: i64 = 20;
    pub const FAILED: i64 = 30;
    pub const ABNORMAL_TERMINATION: i64 = 40;
    pub const SPAWN_ERROR: i64 = 50;
    pub const ALREADY_STARTED: i64 = 60;
    pub const NOT_RUNNING: i64 = 70;
    pub const SUCCESS: i64 = 80;
    pub const ALREADY_ADDED: i64 = 90;
    pub const STILL_RUNNING: i64 = 91;
    pub const CANT_REREAD: i64 = 92;

    pub fn name(code: i64) -> &'static str {
        match code {
            UNKNOWN_METHOD => "UNKNOWN_METHOD",
            INCORRECT_PARAMETERS => "INCORRECT_PARAMETERS",
            BAD_ARGUMENTS => "BAD_ARGUMENTS",
            SIGNATURE_UNSUPPORTED => "SIGNATURE_UNSUPPORTED",
            SHUTDOWN_STATE => "SHUTDOWN_STATE",
            BAD_NAME => "BAD_NAME",
            BAD_SIGNAL => "BAD_SIGNAL",
            NO_FILE => "NO_FILE",
            FAILED => "FAILED",
            ABNORMAL_TERMINATION => "ABNORMAL_TERMINATION",
            SPAWN_ERROR => "SPAWN_ERROR",
            ALREADY_STARTED => "ALREADY_STARTED",
            NOT_RUNNING => "NOT_RUNNING",
            SUCCESS => "SUCCESS",
            ALREADY_ADDED => "ALREADY_ADDED",
            STILL_RUNNING => "STILL_RUNNING",
            CANT_REREAD => "CANT_REREAD",
            _ => "UNKNOWN",
        }
    }
}

/// Every method: name, signature (return type, then parameter types), help.
pub const METHODS: &[(&str, &[&str], &str)] = &[
    (
        "system.listMethods",
        &["array"],
        "Return an array listing the available method names",
    ),
    (
        "system.methodHelp",
        &["string", "string"],
        "Return a string showing the method's documentation",
    ),
    (
        "system.methodSignature",
        &["array", "string"],
        "Return an array describing the method signature",
    ),
    (
        "system.multicall",
        &["array", "array"],
        "Process an array of calls, and return an array of results",
    ),
    (
        "supervisor.getAPIVersion",
        &["string"],
        "Return the version of the RPC API used by supervisord",
    ),
    (
        "supervisor.getVersion",
        &["string"],
        "Return the version of the RPC API used by supervisord (deprecated)",
    ),
    (
        "supervisor.getSupervisorVersion",
        &["string"],
        "Return the version of the supervisor package in use",
    ),
    (
        "supervisor.getIdentification",
        &["string"],
        "Return identifying string of supervisord",
    ),
    (
        "supervisor.getState",
        &["struct"],
        "Return current state of supervisord as a struct",
    ),
    (
        "supervisor.getPID",
        &["int"],
        "Return the PID of supervisord",
    ),
    (
        "supervisor.readLog",
        &["string", "int", "int"],
        "Read length bytes from the main log starting at offset",
    ),
    (
        "supervisor.readMainLog",
        &["string", "int", "int"],
        "Read length bytes from the main log starting at offset (deprecated)",
    ),
    (
        "supervisor.tailLog",
        &["array", "int", "int"],
        "Tail the main log: [string bytes, int offset, bool overflow]",
    ),
    ("supervisor.clearLog", &["boolean"], "Clear the main log"),
    (
        "supervisor.shutdown",
        &["boolean"],
        "Shut down the supervisor process",
    ),
    (
        "supervisor.restart",
        &["boolean"],
        "Apply the configuration file again (this supervisor's reload)",
    ),
    (
        "supervisor.reloadConfig",
        &["array"],
        "Reload the configuration: [[added, changed, removed]]",
    ),
    (
        "supervisor.addProcessGroup",
        &["boolean", "string"],
        "Update the config for a running process from config file",
    ),
    (
        "supervisor.removeProcessGroup",
        &["boolean", "string"],
        "Remove a stopped process from the active configuration",
    ),
    (
        "supervisor.getProcessInfo",
        &["struct", "string"],
        "Get info about a process named name",
    ),
    (
        "supervisor.getAllProcessInfo",
        &["array"],
        "Get info about all processes",
    ),
    (
        "supervisor.getAllConfigInfo",
        &["array"],
        "Get info about all available process configurations",
    ),
    (
        "supervisor.startProcess",
        &["boolean", "string", "boolean"],
        "Start a process",
    ),
    (
        "supervisor.startProcessGroup",
        &["array", "string", "boolean"],
        "Start all processes in the group named 'name'",
    ),
    (
        "supervisor.startAllProcesses",
        &["array", "boolean"],
        "Start all processes listed in the configuration file",
    ),
    (
        "supervisor.stopProcess",
        &["boolean", "string", "boolean"],
        "Stop a process named by name",
    ),
    (
        "supervisor.stopProcessGroup",
        &["array", "string", "boolean"],
        "Stop all processes in the process group named 'name'",
    ),
    (
        "supervisor.stopAllProcesses",
        &["array", "boolean"],
        "Stop all processes in the process list",
    ),
    (
        "supervisor.signalProcess",
        &["boolean", "string", "string"],
        "Send an arbitrary UNIX signal to the process named by name",
    ),
    (
        "supervisor.signalProcessGroup",
        &["array", "string", "string"],
        "Send a signal to all processes in the group named 'name'",
    ),
    (
        "supervisor.signalAllProcesses",
        &["array", "string"],
        "Send a signal to all processes in the process list",
    ),
    (
        "supervisor.sendProcessStdin",
        &["boolean", "string", "string"],
        "Send a string of chars to the stdin of the process name",
    ),
    (
        "supervisor.sendRemoteCommEvent",
        &["boolean", "string", "string"],
        "Send an event that will be received by event listener subprocesses",
    ),
    (
        "supervisor.readProcessStdoutLog",
        &["string", "string", "int", "int"],
        "Read length bytes from name's stdout log starting at offset",
    ),
    (
        "supervisor.readProcessLog",
        &["string", "string", "int", "int"],
        "Read length bytes from name's stdout log starting at offset (deprecated)",
    ),
    (
        "supervisor.readProcessStderrLog",
        &["string", "string", "int", "int"],
        "Read length bytes from name's stderr log starting at offset",
    ),
    (
        "supervisor.tailProcessStdoutLog",
        &["array", "string", "int", "int"],
        "Tail name's stdout log: [string bytes, int offset, bool overflow]",
    ),
    (
        "supervisor.tailProcessLog",
        &["array", "string", "int", "int"],
        "Tail name's stdout log (deprecated)",
    ),
    (
        "supervisor.tailProcessStderrLog",
        &["array", "string", "int", "int"],
        "Tail name's stderr log: [string bytes, int offset, bool overflow]",
    ),
    (
        "supervisor.clearProcessLogs",
        &["boolean", "string"],
        "Clear the stdout and stderr logs for the named process",
    ),
    (
        "supervisor.clearProcessLog",
        &["boolean", "string"],
        "Clear the stdout and stderr logs for the named process (deprecated)",
    ),
    (
        "supervisor.clearAllProcessLogs",
        &["array"],
        "Clear all process log files",
    ),
];
