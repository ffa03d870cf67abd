from django.contrib import admin

from .models import ChatMessage


@admin.register(ChatMessage)
class ChatMessageAdmin(admin.ModelAdmin):
    list_display = ["created_at", "room", "sender", "text"]
    list_filter = ["room__world"]
    search_fields = ["text", "sender__username", "sender__display_name"]
    raw_id_fields = ["room", "sender"]
    date_hierarchy = "created_at"
