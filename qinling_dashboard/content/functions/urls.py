from django.urls import re_path

from qinling_dashboard.content.functions import views

FUNC = r'^(?P<function_id>[^/]+)/'

urlpatterns = [
    re_path(r'^$', views.IndexView.as_view(), name='index'),
    re_path(r'^create/$', views.CreateView.as_view(), name='create'),
    re_path(FUNC + r'$', views.DetailView.as_view(), name='detail'),
    re_path(FUNC + r'update/$', views.UpdateView.as_view(), name='update'),
    re_path(FUNC + r'download/$', views.download, name='download'),
    re_path(FUNC + r'versions/create/$', views.CreateVersionView.as_view(),
            name='create_version'),
    re_path(FUNC + r'aliases/create/$', views.CreateAliasView.as_view(),
            name='create_alias'),
    re_path(FUNC + r'aliases/(?P<alias_name>[^/]+)/update/$',
            views.UpdateAliasView.as_view(), name='update_alias'),
    re_path(FUNC + r'webhooks/create/$', views.CreateWebhookView.as_view(),
            name='create_webhook'),
]
