PANEL = 'functions'
PANEL_DASHBOARD = 'project'
PANEL_GROUP = 'functions'
ADD_PANEL = 'qinling_dashboard.content.functions.panel.Functions'
