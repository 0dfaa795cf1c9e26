from django.urls import re_path

from qinling_dashboard.content.usage import views

urlpatterns = [
    re_path(r'^$', views.IndexView.as_view(), name='index'),
]
