/* jira.h — the Jira product routes (jira.c), mounted by the jira connector
 * (atlassian_products.c). */
#ifndef AURORA_JIRA_H
#define AURORA_JIRA_H

void jira_register_routes(void);

#endif
