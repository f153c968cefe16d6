//! Files the task writes itself (`logrotateAdditionalFiles`).
