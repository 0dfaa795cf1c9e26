from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from horizon import tables
from horizon.utils import filters

from qinling_dashboard.api import qinling as api
from qinling_dashboard.content import common

INDEX = 'horizon:project:functions:index'


def _memory_mb(function):
    if function.memory_size:
        return '%d MB' % (int(function.memory_size) // (1024 * 1024))
    return '-'


class CreateFunction(common.ModalLink):
    name = 'create'
    verbose_name = _('Create Function')
    url = 'horizon:project:functions:create'


class UpdateFunction(common.ModalLink):
    name = 'update'
    verbose_name = _('Edit Function')
    url = 'horizon:project:functions:update'
    icon = 'pencil'


class RunFunction(common.ModalLink):
    name = 'run'
    verbose_name = _('Run')
    icon = 'play'

    def get_link_url(self, datum):
        return '%s?function_id=%s' % (
            reverse('horizon:project:executions:create'), datum.id)


class DownloadFunction(tables.LinkAction):
    name = 'download'
    verbose_name = _('Download Code')
    url = 'horizon:project:functions:download'
    icon = 'download'

    def allowed(self, request, datum):
        return datum is not None and datum.source == 'package'


class DeleteFunction(common.ApiDeleteAction):
    present = ngettext_lazy('Delete Function', 'Delete Functions', 'count')
    past = ngettext_lazy('Deleted Function', 'Deleted Functions', 'count')
    api_call = 'function_delete'


class FunctionsTable(tables.DataTable):
    name = tables.WrappingColumn(
        lambda f: f.name or f.id, verbose_name=_('Name'),
        link='horizon:project:functions:detail')
    runtime = tables.Column('runtime_name', verbose_name=_('Runtime'))
    status = tables.Column('runtime_status', verbose_name=_('Status'),
                           help_text=_("The status of the function's "
                                       "runtime."))
    source = tables.Column('source', verbose_name=_('Code'))
    count = tables.Column('count', verbose_name=_('Executions'))
    memory = tables.Column(_memory_mb, verbose_name=_('Memory'))
    created = tables.Column('created_at', verbose_name=_('Created'),
                            filters=(filters.parse_isotime,
                                     filters.timesince_sortable))

    class Meta(object):
        name = 'functions'
        verbose_name = _('Functions')
        table_actions = (tables.NameFilterAction, CreateFunction,
                         DeleteFunction)
        row_actions = (RunFunction, UpdateFunction, DownloadFunction,
                       DeleteFunction)


# ------------------------------------------------- tables of the detail tabs

class CreateVersion(common.FunctionModalLink):
    name = 'create_version'
    verbose_name = _('Create Version')
    url_name = 'horizon:project:functions:create_version'


class DeleteVersion(common.ApiDeleteAction):
    present = ngettext_lazy('Delete Version', 'Delete Versions', 'count')
    past = ngettext_lazy('Deleted Version', 'Deleted Versions', 'count')

    def delete(self, request, obj_id):
        api.version_delete(request, self.table.kwargs['function_id'], obj_id)


class VersionsTable(tables.DataTable):
    version_number = tables.Column('version_number',
                                   verbose_name=_('Version'))
    description = tables.Column('description', verbose_name=_('Description'))
    count = tables.Column('count', verbose_name=_('Executions'))
    created = tables.Column('created_at', verbose_name=_('Created'),
                            filters=(filters.parse_isotime,))

    def get_object_id(self, datum):
        return str(datum.version_number)

    def get_object_display(self, datum):
        return _('version %s') % datum.version_number

    class Meta(object):
        name = 'versions'
        verbose_name = _('Versions')
        table_actions = (CreateVersion,)
        row_actions = (DeleteVersion,)


class CreateAlias(common.FunctionModalLink):
    name = 'create_alias'
    verbose_name = _('Create Alias')
    url_name = 'horizon:project:functions:create_alias'


class UpdateAlias(common.ModalLink):
    name = 'update_alias'
    verbose_name = _('Point at Version')
    icon = 'pencil'

    def get_link_url(self, datum):
        return reverse('horizon:project:functions:update_alias',
                       args=[self.table.kwargs['function_id'], datum.name])


class DeleteAlias(common.ApiDeleteAction):
    present = ngettext_lazy('Delete Alias', 'Delete Aliases', 'count')
    past = ngettext_lazy('Deleted Alias', 'Deleted Aliases', 'count')
    api_call = 'alias_delete'


class AliasesTable(tables.DataTable):
    name = tables.Column('name', verbose_name=_('Name'))
    version = tables.Column('function_version', verbose_name=_('Version'))
    description = tables.Column('description', verbose_name=_('Description'))
    updated = tables.Column('updated_at', verbose_name=_('Updated'),
                            filters=(filters.parse_isotime,))

    def get_object_id(self, datum):
        return datum.name

    class Meta(object):
        name = 'aliases'
        verbose_name = _('Aliases')
        table_actions = (CreateAlias,)
        row_actions = (UpdateAlias, DeleteAlias)


class CreateWebhook(common.FunctionModalLink):
    name = 'create_webhook'
    verbose_name = _('Create Webhook')
    url_name = 'horizon:project:functions:create_webhook'


class DeleteWebhook(common.ApiDeleteAction):
    present = ngettext_lazy('Delete Webhook', 'Delete Webhooks', 'count')
    past = ngettext_lazy('Deleted Webhook', 'Deleted Webhooks', 'count')
    api_call = 'webhook_delete'


def _copyable(url):
    # A read-only field the user selects with one click and copies.
    return format_html(
        '<input type="text" readonly class="form-control webhook-url" '
        'value="{}" onclick="this.select()">', url)


def _webhook_target(webhook):
    if webhook.function_alias:
        return _('alias %s') % webhook.function_alias
    return _('version %s') % (webhook.function_version or 0)


class WebhooksTable(tables.DataTable):
    url = tables.Column('webhook_url', verbose_name=_('URL'),
                        filters=(_copyable,),
                        help_text=_('POST to it, without a token, to run '
                                    'the function.'))
    target = tables.Column(_webhook_target, verbose_name=_('Runs'))
    description = tables.Column('description', verbose_name=_('Description'))
    created = tables.Column('created_at', verbose_name=_('Created'),
                            filters=(filters.parse_isotime,))

    class Meta(object):
        name = 'webhooks'
        verbose_name = _('Webhooks')
        table_actions = (CreateWebhook,)
        row_actions = (DeleteWebhook,)
