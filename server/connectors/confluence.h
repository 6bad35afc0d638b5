void confluence_register_routes(void);
