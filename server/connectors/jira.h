void jira_register_routes(void);
