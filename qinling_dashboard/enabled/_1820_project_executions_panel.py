PANEL = 'executions'
PANEL_DASHBOARD = 'project'
PANEL_GROUP = 'functions'
ADD_PANEL = 'qinling_dashboard.content.executions.panel.Executions'
