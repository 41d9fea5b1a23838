//! The app's frame around the panels: status line and log, the queue of commands run after the
//! frame, which tab and side page show, the file dialog, the window title and theme.

use crate::commands::{Command, Tab};
use crate::tasks::{Picked, Task, Waker};
use crate::{Level, SidePage};

/// Status, command queue and navigation of the window.
pub struct Shell {
    /// Wakes the UI from background work.
    pub waker: Waker,
    /// Whether the first frame ran.
    pub started: bool,
    /// The open file dialog.
    pub dialog: Option<Task<(), Picked>>,
    /// The latest status message.
    pub status: Option<(Level, String)>,
    /// Every status message of this session, oldest first.
    pub log: Vec<(Level, String)>,
    /// Commands to run after this frame.
    pub pending: Vec<Command>,
    /// The central tab.
    pub tab: Tab,
    /// The right panel's page.
    pub side: SidePage,
    /// Keyboard help shown.
    pub show_help: bool,
    /// The theme applied last (dark or not).
    pub applied_theme: Option<bool>,
    /// The window title set last.
    pub title: String,
}

impl Shell {
    /// A shell on the Photos tab that wakes the UI through `waker`.
    pub fn new(waker: Waker) -> Self {
        Self {
            waker,
            started: false,
            dialog: None,
            status: None,
            log: Vec::new(),
            pending: Vec::new(),
            tab: Tab::Photos,
            side: SidePage::Photo,
            show_help: false,
            applied_theme: None,
            title: String::new(),
        }
    }

    /// Records a status message (logged with `tracing` too); the log keeps the last 500.
    pub fn say(&mut self, level: Level, text: String) {
        match level {
            Level::Info => tracing::info!("{text}"),
            Level::Warning => tracing::warn!("{text}"),
            Level::Error => tracing::error!("{text}"),
        }
        self.log.push((level, text.clone()));
        if self.log.len() > 500 {
            self.log.remove(0);
        }
        self.status = Some((level, text));
    }
}
