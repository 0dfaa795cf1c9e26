PANEL = 'function_usage'
PANEL_DASHBOARD = 'project'
PANEL_GROUP = 'functions'
ADD_PANEL = 'qinling_dashboard.content.usage.panel.Usage'
