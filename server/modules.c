/* modules.c — every module that serves routes registers here.  Adding an API
 * module or a connector is one declaration and one line in the table. */
#include "router.h"

void auth_register(void);
void access_log_register(void); /* access_log.h */
void https_redirect_register(void); /* https_redirect.h */
void api_health_register(void);
void api_identity_register(void);
void api_tokens_register(void);
void api_audit_register(void);
void forward_register(void); /* forward.h: /internal/forward/exec */
void api_exec_register(void);
void api_cloud_exec_register(void);
void connectors_register(void);
void incidents_register_routes(void); /* incidents.h */
void kit_chat_register_routes(void);  /* connectors/kit_chat.h */
void console_session_register(void);  /* console_session.h */

static void (*const modules[])(void) = {
    auth_register,
    access_log_register,
    https_redirect_register,
    api_health_register,
    api_identity_register,
    api_tokens_register,
    api_audit_register,
    forward_register,
    api_exec_register,
    api_cloud_exec_register,
    connectors_register,
    incidents_register_routes,
    kit_chat_register_routes,
    console_session_register,
};

void modules_register_all(void)
{
    for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++)
        modules[i]();
}
